"""`sagaline saga retry|cancel ID` against the orchestrator's real app served by uvicorn (its
real handler, an SQLite database): the saga is compensated or re-driven, who asked is in its
history, and a refusal exits 1 with the orchestrator's reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.domain.engine import SagaStatus
from sagaline.services.orchestrator.saga_queries import saga_detail
from tests.unit.orchestrator_harness import definition, harness
from tests.unit.test_saga_client import TOKEN, Served, serve
from tests.unit.test_stuck_saga import row


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    async with harness(url, definition("flight", "hotel", compensation_attempts=1)) as trip:
        async for address in serve(trip, TOKEN):
            yield Served(trip, address)


async def run(served: Served, *args: str) -> tuple[int, str]:
    runner = CliRunner()
    argv = ["saga", *args, "--url", served.url, "--api-token", TOKEN, "--actor", "bob"]
    result = await asyncio.to_thread(runner.invoke, app, argv)
    return result.exit_code, result.output


async def test_cancel_then_retry_from_the_command_line(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    trip = served.trip
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"ticket": "T1"})

    code, output = await run(served, "cancel", str(saga_id))
    assert code == 0, output
    assert f"{saga_id} COMPENSATING (cancelled by bob)" in output
    assert (await row(trip, saga_id))["status"] == SagaStatus.COMPENSATING

    code, output = await run(served, "retry", str(saga_id))
    assert code == 1
    assert "HTTP 409" in output and "only a FAILED or STUCK saga can be retried" in output

    await trip.compensated(saga_id, "hotel")
    await trip.tick_later(monkeypatch, 1_000)  # flight's compensation is given up: FAILED
    assert (await row(trip, saga_id))["status"] == SagaStatus.FAILED
    code, output = await run(served, "retry", str(saga_id))
    assert code == 0, output
    assert f"{saga_id} COMPENSATING" in output
    assert [c.attempt for c in await trip.compensations(saga_id, "flight")] == [1, 1]
    async with trip.db.reads() as session:
        detail = await saga_detail(session, saga_id)
    assert detail is not None
    asked = [(e.type, e.detail) for e in detail.history if e.direction == "operator"]
    assert asked == [("cancel", "asked by bob"), ("retry", "asked by bob")]
