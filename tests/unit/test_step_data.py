"""Data between steps, through the real orchestrator handler on SQLite: each step's result is
kept on the saga, merged into the commands of the steps after it (sequential; a key is never
overwritten), the same in a re-sent command, and handed to the step's compensation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select
from sqlmodel import col

from sagaline.services.orchestrator.models import Saga
from sagaline.traces.saga_timeline import render
from tests.unit.orchestrator_harness import Harness, definition, harness, payloads

STEPS = ("flight", "hotel", "car")
Make = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def make(tmp_path: Path) -> Make:
    def made(**options: Any) -> AbstractAsyncContextManager[Harness]:
        return harness(f"sqlite:///{tmp_path / 'orchestrator.db'}", definition(*STEPS, **options))

    return made


@pytest.fixture
async def trip(make: Make) -> AsyncIterator[Harness]:
    async with make() as h:
        yield h


async def saga_row(h: Harness, saga_id: object) -> Saga:
    async with h.db.reads() as session:
        saga = (await session.scalars(select(Saga).where(col(Saga.id) == saga_id))).one()
    return saga


async def test_each_command_carries_the_results_of_the_steps_before_it(trip: Harness) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"seat": "12A"})
    await trip.done(saga_id, "hotel", {"room": 7})
    await trip.done(saga_id, "car", {"car": "C-1"})

    assert payloads(await trip.commands(saga_id, "flight")) == [{"traveller": "ada"}]
    assert payloads(await trip.commands(saga_id, "hotel")) == [{"traveller": "ada", "seat": "12A"}]
    assert payloads(await trip.commands(saga_id, "car")) == [
        {"traveller": "ada", "seat": "12A", "room": 7}
    ]
    saga = await saga_row(trip, saga_id)
    assert saga.status == "COMPLETED"
    assert saga.results == {"flight": {"seat": "12A"}, "hotel": {"room": 7}, "car": {"car": "C-1"}}
    assert saga.payload == {"traveller": "ada"}  # the initial payload stays as it was given


async def test_a_key_is_never_overwritten(trip: Harness) -> None:
    """The initial payload's keys first, then each earlier step's new keys in step order: a
    step cannot change what the caller asked for, nor a later step what an earlier one said."""
    saga_id = await trip.start({"traveller": "ada", "ref": "caller"})
    await trip.done(saga_id, "flight", {"ref": "flight", "seat": "12A", "shared": "flight"})
    await trip.done(saga_id, "hotel", {"shared": "hotel", "seat": "99Z", "room": 7})

    (car,) = payloads(await trip.commands(saga_id, "car"))
    assert car == {
        "traveller": "ada",
        "ref": "caller",
        "seat": "12A",
        "shared": "flight",
        "room": 7,
    }
    saga = await saga_row(trip, saga_id)
    assert saga.results["hotel"] == {"shared": "hotel", "seat": "99Z", "room": 7}  # kept whole


async def test_parallel_commands_carry_the_initial_payload_only(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make(execution="parallel") as trip:
        saga_id = await trip.start({"traveller": "ada"})
        await trip.done(saga_id, "flight", {"seat": "12A"})
        await trip.tick_later(monkeypatch, 3600)  # hotel and car re-sent, after flight's result

        for step in ("hotel", "car"):
            commands = await trip.commands(saga_id, step)
            assert [c.attempt for c in commands] == [1, 2]
            assert payloads(commands) == [{"traveller": "ada"}] * 2
        saga = await saga_row(trip, saga_id)
        assert saga.results == {"flight": {"seat": "12A"}}


async def test_a_resent_command_carries_the_same_merged_payload(
    trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"seat": "12A"})
    assert await trip.tick_later(monkeypatch, 3600) == 1

    commands = await trip.commands(saga_id, "hotel")
    assert [c.attempt for c in commands] == [1, 2]
    assert payloads(commands) == [{"traveller": "ada", "seat": "12A"}] * 2


async def test_the_first_result_stays(trip: Harness) -> None:
    """A step's service repeats its original reply; were another one to come, the commands
    already sent (and those re-sent) keep what the first one said."""
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"seat": "12A"})
    await trip.done(saga_id, "flight", {"seat": "1C"}, attempt=2)

    assert payloads(await trip.commands(saga_id, "hotel")) == [{"traveller": "ada", "seat": "12A"}]
    assert (await saga_row(trip, saga_id)).results == {"flight": {"seat": "12A"}}


async def test_a_compensation_carries_its_steps_result(trip: Harness) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"booking": "F-1"})
    await trip.failed(saga_id, "hotel", "no room")

    assert payloads(await trip.compensations(saga_id, "flight")) == [{"result": {"booking": "F-1"}}]
    assert await trip.compensations(saga_id, "hotel") == []  # refused: nothing to undo
    await trip.compensated(saga_id, "flight")
    assert (await saga_row(trip, saga_id)).status == "COMPENSATED"


async def test_a_step_that_never_answered_is_compensated_with_no_result(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its compensation says `result: null` (its service undoes by the idempotency key). When
    its success comes late, the result is kept: the compensation re-sent after it carries it."""
    async with make(max_attempts=1) as trip:
        saga_id = await trip.start({"traveller": "ada"})
        await trip.done(saga_id, "flight", {"booking": "F-1"})
        await trip.tick_later(monkeypatch, 3600)  # hotel: no reply after its one attempt

        assert payloads(await trip.compensations(saga_id, "hotel")) == [{"result": None}]
        assert payloads(await trip.compensations(saga_id, "flight")) == [
            {"result": {"booking": "F-1"}}
        ]
        await trip.compensated(saga_id, "flight")
        await trip.done(saga_id, "hotel", {"booking": "H-9"})  # it took effect after all
        await trip.tick_later(monkeypatch, 7200)  # hotel's compensation unanswered: re-sent

        assert payloads(await trip.compensations(saga_id, "hotel")) == [
            {"result": None},
            {"result": {"booking": "H-9"}},
        ]
        await trip.compensated(saga_id, "hotel")
        saga = await saga_row(trip, saga_id)
        assert saga.status == "COMPENSATED"
        assert saga.results == {"flight": {"booking": "F-1"}, "hotel": {"booking": "H-9"}}


async def test_the_timeline_page_and_trace_show_each_steps_result(trip: Harness) -> None:
    """The page's steps table and `sagaline trace`, both from the saga's JSON: a result is
    text (escaped in the page, not markup in the terminal)."""
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"seat": "12A", "note": "<b>[bold]window[/bold]</b>"})
    await trip.failed(saga_id, "hotel", "no room")
    transport = httpx.ASGITransport(app=trip.app(token=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://orchestrator") as client:
        page = (await client.get(f"/ui/sagas/{saga_id}")).text
        saga = (await client.get(f"/sagas/{saga_id}")).json()

    shown = escape(json.dumps({"seat": "12A", "note": "<b>[bold]window[/bold]</b>"}))
    assert f'<td class="result"><code>{shown}</code></td>' in page
    assert "<b>[bold]" not in page
    assert page.count('<td class="result"><code></code></td>') == 2  # hotel refused, car never ran

    console = Console(record=True, width=200)
    render(saga, console)
    lines = console.export_text().splitlines()
    (flight,) = [line for line in lines if line.strip().startswith("flight  {")]
    assert '"seat": "12A"' in flight and "[bold]window[/bold]" in flight
    assert not any(line.strip().startswith(("hotel  {", "car  {")) for line in lines)
