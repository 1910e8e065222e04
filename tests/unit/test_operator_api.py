"""`POST /sagas/{id}/retry` and `/cancel` on the orchestrator's real app, its real handler and an
SQLite database: the token is always needed, who asked is written into the history, a state
that does not allow it is a 409 with the reason; a FAILED saga's compensation is re-sent with
fresh attempts, a STUCK saga's parked reply is applied, a RUNNING saga is compensated; and a
compensation acknowledged after the saga gave up finishes it COMPENSATED."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagaline.domain.engine import SagaStatus
from tests.unit.orchestrator_harness import TOKEN, Harness, definition, harness
from tests.unit.test_stuck_saga import POISON, parked, poison_commands, row

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def trip(tmp_path: Path) -> AsyncIterator[Harness]:
    saga = definition("flight", "hotel", compensation_attempts=2)
    async with harness(f"sqlite:///{tmp_path / 'orchestrator.db'}", saga) as h:
        yield h


@pytest.fixture
async def client(trip: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with trip.client() as client:
        yield client


def operator_events(saga: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["type"], e["detail"]) for e in saga["history"] if e["direction"] == "operator"]


async def failed_saga(trip: Harness, monkeypatch: pytest.MonkeyPatch) -> uuid.UUID:
    """flight done, hotel refused, flight's compensation never answered: FAILED."""
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"ticket": "T1"})
    await trip.failed(saga_id, "hotel", "full")
    for later in (1_000, 2_000, 3_000):
        await trip.tick_later(monkeypatch, later)
    assert (await row(trip, saga_id))["status"] == SagaStatus.FAILED
    return saga_id


@pytest.mark.parametrize("action", ["retry", "cancel"])
async def test_the_token_is_always_needed(trip: Harness, action: str) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    async with trip.client(None) as open_service:
        refused = await open_service.post(f"/sagas/{saga_id}/{action}", headers=AUTH)
        assert refused.status_code == 403
        assert "needs an API token" in refused.json()["detail"]
    async with trip.client() as client:
        assert (await client.post(f"/sagas/{saga_id}/{action}")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post(f"/sagas/{saga_id}/{action}", headers=wrong)).status_code == 401
        assert (
            await client.post(f"/sagas/{uuid.uuid4()}/{action}", headers=AUTH)
        ).status_code == 404
    assert (await row(trip, saga_id))["status"] == SagaStatus.RUNNING


async def test_cancel_compensates_a_running_saga_and_says_who_asked(
    trip: Harness, client: httpx.AsyncClient
) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"ticket": "T1"})
    asked = {**AUTH, "X-Sagaline-Actor": "alice@ops"}
    answer = await client.post(f"/sagas/{saga_id}/cancel", headers=asked)
    assert answer.status_code == 202, answer.text
    saga = answer.json()
    assert saga["status"] == SagaStatus.COMPENSATING
    assert saga["reason"] == "cancelled by alice@ops"
    assert operator_events(saga) == [("cancel", "asked by alice@ops")]
    [undo] = await trip.compensations(saga_id, "flight")
    assert undo.payload == {"result": {"ticket": "T1"}}

    again = await client.post(f"/sagas/{saga_id}/cancel", headers=AUTH)
    assert again.status_code == 409
    assert "is COMPENSATING: only a RUNNING saga can be cancelled" in again.json()["detail"]
    assert len(await trip.compensations(saga_id, "hotel")) == 1  # its command was in flight
    await trip.compensated(saga_id, "flight")
    await trip.compensated(saga_id, "hotel")
    assert (await row(trip, saga_id))["status"] == SagaStatus.COMPENSATED


async def test_a_bad_actor_header_is_a_422(trip: Harness, client: httpx.AsyncClient) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    bad = {**AUTH, "X-Sagaline-Actor": "x" * 101}
    answer = await client.post(f"/sagas/{saga_id}/cancel", headers=bad)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["header", "X-Sagaline-Actor"]


async def test_retry_of_a_completed_saga_is_refused_with_the_reason(
    trip: Harness, client: httpx.AsyncClient
) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"ticket": "T1"})
    await trip.done(saga_id, "hotel", {"room": 1})
    answer = await client.post(f"/sagas/{saga_id}/retry", headers=AUTH)
    assert answer.status_code == 409
    assert answer.json()["detail"] == (
        f"saga {saga_id} is COMPLETED: only a FAILED or STUCK saga can be retried"
    )


async def test_retry_of_a_failed_saga_resends_its_compensation_with_fresh_attempts(
    trip: Harness, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = await failed_saga(trip, monkeypatch)
    assert [c.attempt for c in await trip.compensations(saga_id, "flight")] == [1, 2]
    answer = await client.post(f"/sagas/{saga_id}/retry", headers=AUTH)
    assert answer.status_code == 202, answer.text
    saga = answer.json()
    assert saga["status"] == SagaStatus.COMPENSATING
    assert operator_events(saga) == [("retry", "asked by the API token")]
    assert [c.attempt for c in await trip.compensations(saga_id, "flight")] == [1, 2, 1]
    await trip.compensated(saga_id, "flight")
    assert (await row(trip, saga_id))["status"] == SagaStatus.COMPENSATED


async def test_a_late_compensation_ack_finishes_a_failed_saga_compensated(
    trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = await failed_saga(trip, monkeypatch)
    await trip.compensated(saga_id, "flight")  # the effect was undone after the give-up
    saga = await row(trip, saga_id)
    assert saga["status"] == SagaStatus.COMPENSATED
    assert saga["reason"] == "hotel: full"


async def test_retry_of_a_stuck_saga_applies_its_parked_reply_once_the_cause_is_gone(
    trip: Harness, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = await trip.start(POISON)
    with monkeypatch.context() as fault:
        poison_commands(fault)
        await trip.done(saga_id, "flight", {"ticket": "T1"})  # parked: hotel's command raises
        assert len(await parked(trip, saga_id)) == 1
        for later in (100, 200, 300):
            await trip.tick_later(fault, later)
        assert (await row(trip, saga_id))["status"] == SagaStatus.STUCK
        # Shown: in the list's status filter on /ui, in GET /sagas and its summary.
        page = (await client.get("/ui", params={"status": "STUCK"})).text
        assert f'data-saga="{saga_id}"' in page and 'data-status="STUCK"' in page
        assert '<option value="STUCK" selected>' in page
        listed = (await client.get("/sagas", params={"status": "STUCK"})).json()
        assert [saga["id"] for saga in listed] == [str(saga_id)]
        assert (await client.get("/sagas/summary")).json()["STUCK"] == 1
        still = await client.post(f"/sagas/{saga_id}/retry", headers=AUTH)
        assert still.status_code == 202
        assert still.json()["status"] == SagaStatus.STUCK  # the cause is still there
        assert "cannot build this saga's command" in still.json()["reason"]
        assert (await client.post(f"/sagas/{saga_id}/cancel", headers=AUTH)).status_code == 409

    answer = await client.post(f"/sagas/{saga_id}/retry", headers=AUTH)
    assert answer.status_code == 202
    saga = answer.json()
    assert saga["status"] == SagaStatus.RUNNING and saga["results"]["flight"] == {"ticket": "T1"}
    assert [e["type"] for e in saga["history"] if e["direction"] == "failed"] == ["error"] * 5
    assert await parked(trip, saga_id) == []
    assert len(await trip.commands(saga_id, "hotel")) == 1
    await trip.done(saga_id, "hotel", {"room": 7})
    assert (await row(trip, saga_id))["status"] == SagaStatus.COMPLETED
