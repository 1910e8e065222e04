"""`GET /sagas` filters (status, age, failure reason) on the real router and a real SQLite
database of the orchestrator's schema, rows written with known ages; bad input is a 422."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from sagaline.domain.clock import utcnow
from sagaline.http.api import validation_error
from sagaline.registration import find, upgrade
from sagaline.services.orchestrator.api import router
from sagaline.services.orchestrator.models import Saga
from sagaline.storage.db import Database

# (status, age in seconds, reason)
ROWS = {
    "done": ("COMPLETED", 10, None),
    "refunded": ("COMPENSATED", 120, "stock: out of stock for p-1 (wanted 2, have 1)"),
    "stuck": ("FAILED", 3600, "compensation of stock given up after 20 attempts"),
    "old": ("COMPENSATED", 7200, "payment: insufficient funds 100%_off"),
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    url = f"sqlite:///{tmp_path / 'order_orchestratordb.db'}"
    await asyncio.to_thread(upgrade, find("orchestrator"), url)
    db = Database(url)
    ids = {name: uuid.uuid4() for name in ROWS}
    now = utcnow()
    async with db.transaction() as session:
        for name, (status, age_s, reason) in ROWS.items():
            created = now - timedelta(seconds=age_s)
            session.add(
                Saga(
                    id=ids[name],
                    name="order",
                    status=status,
                    execution="sequential",
                    payload={},
                    state={"steps": {}},
                    reason=reason,
                    created_at=created,
                    updated_at=created,
                )
            )
    app = FastAPI()
    app.state.runtime = SimpleNamespace(db=db)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, {str(saga_id): name for name, saga_id in ids.items()}
    finally:
        await db.dispose()


async def listed(api: tuple[httpx.AsyncClient, dict[str, str]], query: str) -> list[str]:
    client, names = api
    response = await client.get(f"/sagas?{query}")
    assert response.status_code == 200, response.text
    return [names[saga["id"]] for saga in response.json()]


async def test_no_filter_lists_every_saga_oldest_first(api) -> None:
    assert await listed(api, "") == ["old", "stuck", "refunded", "done"]
    assert await listed(api, "newest_first=true") == ["done", "refunded", "stuck", "old"]


async def test_empty_parameters_are_no_filter_as_a_form_sends_them(api) -> None:
    everything = await listed(api, "")
    assert await listed(api, "status=&older_than_s=&newer_than_s=&reason=") == everything


async def test_status_filter(api) -> None:
    assert await listed(api, "status=COMPENSATED") == ["old", "refunded"]
    assert await listed(api, "status=FAILED") == ["stuck"]


async def test_age_filters_in_seconds(api) -> None:
    assert await listed(api, "older_than_s=60") == ["old", "stuck", "refunded"]
    assert await listed(api, "newer_than_s=600") == ["refunded", "done"]
    assert await listed(api, "older_than_s=60&newer_than_s=5000") == ["stuck", "refunded"]
    assert await listed(api, "older_than_s=60&status=COMPENSATED") == ["old", "refunded"]


async def test_reason_filter_is_a_case_insensitive_substring(api) -> None:
    assert await listed(api, "reason=OUT%20OF%20STOCK") == ["refunded"]
    assert await listed(api, "reason=given%20up") == ["stuck"]
    assert await listed(api, "reason=stock") == ["stuck", "refunded"]


async def test_reason_filter_takes_like_wildcards_literally(api) -> None:
    assert await listed(api, "reason=%25_off") == ["old"]  # "%_off" itself
    assert await listed(api, "reason=_") == ["old"]  # only that reason has an underscore
    assert await listed(api, "reason=%25") == ["old"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=SLEEPING", "status"),
        ("older_than_s=-1", "older_than_s"),
        ("older_than_s=soon", "older_than_s"),
        ("newer_than_s=1e12", "newer_than_s"),
        ("reason=" + "x" * 201, "reason"),
        ("newest_first=perhaps", "newest_first"),
    ],
)
async def test_bad_filters_are_refused_with_422_naming_the_field(api, query, field) -> None:
    client, _ = api
    response = await client.get(f"/sagas?{query}")
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]
