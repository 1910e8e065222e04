"""One saga cannot stall the others: on the real orchestrator handler and an SQLite database, a
saga whose processing raises is rolled back alone (the 60 others due in the same tick, or
replying in the same consumer batch, go on), retried with backoff, shown STUCK and counted;
its reply is parked with it, not dead-lettered, and applied by the retry once the cause is gone.
The fault: the orchestrator's command building raises for one saga's payload."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy import select

from sagaline.delivery.consumer import MessageLoop
from sagaline.delivery.dead_letter import DLT_REASON, DLT_TOPIC
from sagaline.delivery.outbox import OUTBOX
from sagaline.domain.engine import SagaStatus
from sagaline.domain.envelope import Envelope
from sagaline.services.orchestrator import handler as handler_module
from sagaline.services.orchestrator.handler import SAGAS
from sagaline.services.orchestrator.saga_metrics import SagasInFlight
from sagaline.services.orchestrator.stuck import PARKED, STUCK_AFTER
from tests.unit.orchestrator_harness import Harness, definition, harness

OTHERS = 60
POISON = {"poison": True}


@pytest.fixture
async def trip(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(
        f"sqlite:///{tmp_path / 'orchestrator.db'}", definition("flight", "hotel")
    ) as h:
        yield h


def poison_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cause: building a command raises for the poisoned saga's payload only."""
    real = handler_module.command_payload

    def command_payload(payload: dict[str, Any], *args: Any) -> dict[str, Any]:
        if payload.get("poison"):
            raise RuntimeError("cannot build this saga's command")
        return real(payload, *args)

    monkeypatch.setattr(handler_module, "command_payload", command_payload)


async def row(h: Harness, saga_id: uuid.UUID) -> dict[str, Any]:
    async with h.db.reads() as session:
        result = await session.execute(select(SAGAS).where(SAGAS.c.id == saga_id))
        return dict(result.mappings().one())


async def parked(h: Harness, saga_id: uuid.UUID) -> list[dict[str, Any]]:
    async with h.db.reads() as session:
        query = select(PARKED).where(PARKED.c.saga_id == saga_id).order_by(PARKED.c.id)
        return [dict(r) for r in (await session.execute(query)).mappings()]


async def dead_letters(h: Harness) -> int:
    async with h.db.reads() as session:
        rows = (await session.execute(select(OUTBOX.c.topic))).scalars().all()
    return sum(1 for topic in rows if topic.endswith(".dlt"))


def failures_counted() -> float:
    value = REGISTRY.get_sample_value("sagaline_saga_failures_total", {"service": "orchestrator"})
    return value or 0.0


def stuck_gauge() -> float:
    return REGISTRY.get_sample_value("sagaline_sagas_in_flight", {"status": "STUCK"}) or 0.0


async def test_a_raising_saga_goes_stuck_while_the_others_due_in_its_tick_are_resent(
    trip: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    others = [await trip.start({"n": n}) for n in range(OTHERS)]
    bad = await trip.start(POISON | {"n": -1})  # its first command went out before the fault
    poison_commands(monkeypatch)
    counted = failures_counted()

    assert await trip.tick_later(monkeypatch, 100) == OTHERS + 1
    assert "each saga alone" not in caplog.text  # undone alone inside the tick's transaction
    for saga_id in others:  # every other saga's re-send committed in the tick
        assert [c.attempt for c in await trip.commands(saga_id, "flight")] == [1, 2]
    assert [c.attempt for c in await trip.commands(bad, "flight")] == [1]
    saga = await row(trip, bad)
    assert saga["failures"] == 1 and saga["status"] == SagaStatus.RUNNING
    assert "RuntimeError: cannot build this saga's command" in saga["reason"]

    for later in range(2, STUCK_AFTER + 1):  # retried alone, with backoff, until STUCK
        await trip.tick_later(monkeypatch, 100 * later)
    saga = await row(trip, bad)
    assert saga["failures"] == STUCK_AFTER and saga["status"] == SagaStatus.STUCK
    assert failures_counted() - counted == STUCK_AFTER
    trip.orchestrator.in_flight = SagasInFlight(interval_s=0)
    await trip.orchestrator.in_flight.refresh(trip.db)
    assert stuck_gauge() == 1

    monkeypatch.undo()  # the cause is gone: the next retry re-drives the saga
    await trip.tick_later(monkeypatch, 10_000)
    saga = await row(trip, bad)
    assert saga["failures"] == 0 and saga["status"] == SagaStatus.RUNNING
    assert [c.attempt for c in await trip.commands(bad, "flight")] == [1, 2]
    await trip.orchestrator.in_flight.refresh(trip.db)
    assert stuck_gauge() == 0


def record_of(topic: str, envelope: Envelope, offset: int) -> Any:
    value = envelope.encode()
    return ConsumerRecord(topic, 0, offset, 0, 0, envelope.key, value, None, 36, len(value), [])


async def test_a_reply_that_raises_is_parked_with_its_saga_and_applied_on_retry(
    trip: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    others = [await trip.start({"n": n}) for n in range(OTHERS)]
    bad = await trip.start(POISON | {"n": -1})
    poison_commands(monkeypatch)
    loop = MessageLoop(
        trip.db, trip.orchestrator, bootstrap_servers="unused:9092", group_id="orchestrator"
    )
    types, topics = trip.orchestrator.types["flight"], trip.orchestrator.steps["flight"]

    def done(saga_id: uuid.UUID, step: str = "flight") -> Envelope:
        return Envelope(
            type=trip.orchestrator.types[step].done,
            saga_id=saga_id,
            saga=trip.saga,
            step=step,
            payload={"ticket": str(saga_id)},
        )

    # One consumer batch: the poisoned saga's flight reply (its hotel command cannot be built)
    # among the others', which move on to their hotel step in the same transaction.
    batch = [record_of(topics.success, done(s), i) for i, s in enumerate([bad, *others])]
    assert await loop.process(batch)
    assert "one by one" not in caplog.text  # undone alone inside the batch's transaction
    for saga_id in others:
        assert len(await trip.commands(saga_id, "hotel")) == 1
    assert await trip.commands(bad, "hotel") == []
    assert await dead_letters(trip) == 0  # the reply was not dead-lettered but parked
    [kept] = await parked(trip, bad)
    assert kept["envelope"]["type"] == types.done
    assert (await row(trip, bad))["failures"] == 1

    # A malformed reply is still a dead letter.
    forged = done(bad).model_copy(update={"step": "hotel"})
    assert await loop.process([record_of(topics.success, forged, 1000)])
    assert await dead_letters(trip) == 1

    for saga_id in others:  # the others complete
        await trip.done(saga_id, "hotel", {"room": 1})
        assert (await row(trip, saga_id))["status"] == SagaStatus.COMPLETED

    monkeypatch.undo()  # the cause is gone: the retry applies the parked reply
    await trip.tick_later(monkeypatch, 10_000)
    saga = await row(trip, bad)
    assert saga["failures"] == 0 and saga["status"] == SagaStatus.RUNNING
    assert saga["results"] == {"flight": {"ticket": str(bad)}}
    [hotel] = await trip.commands(bad, "hotel")
    assert hotel.payload["ticket"] == str(bad)
    assert await parked(trip, bad) == []
    await trip.done(bad, "hotel", {"room": 2})
    assert (await row(trip, bad))["status"] == SagaStatus.COMPLETED


async def test_a_saga_whose_writes_the_database_refuses_does_not_stall_the_tick(
    trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error fails the tick's whole transaction (no in-memory undo can help): the due
    sagas are then taken one by one, and the one the database refuses is marked alone."""
    others = [await trip.start({"n": n}) for n in range(OTHERS)]
    bad = await trip.start(POISON)
    real = handler_module.outbox

    def send(session: Any, topic: str | None, envelopes: list[Envelope]) -> None:
        refused = any(envelope.payload.get("poison") for envelope in envelopes)
        real.send(session, None if refused else topic, envelopes)  # type: ignore[arg-type]

    monkeypatch.setattr(handler_module, "outbox", SimpleNamespace(send=send))
    assert await trip.tick_later(monkeypatch, 100) == OTHERS + 1
    for saga_id in others:
        assert [c.attempt for c in await trip.commands(saga_id, "flight")] == [1, 2]
    saga = await row(trip, bad)
    assert saga["failures"] == 1 and "IntegrityError" in saga["reason"]
    assert [c.attempt for c in await trip.commands(bad, "flight")] == [1]


async def test_a_reply_whose_writes_the_database_refuses_is_parked_not_dead_lettered(
    trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer retries a failed batch record by record; the one that fails alone is kept
    by the orchestrator (parked with its saga) rather than dead-lettered, and applied on retry."""
    others = [await trip.start({"n": n}) for n in range(OTHERS)]
    bad = await trip.start(POISON)
    real = handler_module.outbox

    def send(session: Any, topic: str | None, envelopes: list[Envelope]) -> None:
        refused = any(envelope.payload.get("poison") for envelope in envelopes)
        real.send(session, None if refused else topic, envelopes)  # type: ignore[arg-type]

    loop = MessageLoop(trip.db, trip.orchestrator, bootstrap_servers="unused:9092", group_id="o")
    topic = trip.orchestrator.steps["flight"].success
    done = trip.orchestrator.types["flight"].done
    batch = [
        record_of(topic, Envelope(type=done, saga_id=s, saga=trip.saga, step="flight"), i)
        for i, s in enumerate([*others, bad])
    ]
    with monkeypatch.context() as fault:
        fault.setattr(handler_module, "outbox", SimpleNamespace(send=send))
        assert await loop.process(batch)
    for saga_id in others:
        assert len(await trip.commands(saga_id, "hotel")) == 1
    assert await dead_letters(trip) == 0
    assert len(await parked(trip, bad)) == 1
    saga = await row(trip, bad)
    assert saga["failures"] == 1 and "IntegrityError" in saga["reason"]

    await trip.tick_later(monkeypatch, 10_000)  # the cause is gone: the retry applies it
    assert len(await trip.commands(bad, "hotel")) == 1
    assert await parked(trip, bad) == []


async def test_a_dead_letter_for_a_saga_with_failures_waits_parked_and_is_re_driven(
    trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's dead letter (no envelope: its origin topic and reason in the headers) for a saga
    whose processing failed is parked in order behind its reply, then re-driven: the reply
    first (hotel is commanded), then the dead letter of that hotel command (hotel compensated)."""
    saga_id = await trip.start(POISON)
    hotel = trip.orchestrator.steps["hotel"]
    with monkeypatch.context() as fault:
        poison_commands(fault)
        await trip.done(saga_id, "flight", {"ticket": "T1"})  # parked: hotel's command raises
        value = b"{not json"
        headers = [(DLT_REASON, b"invalid envelope"), (DLT_TOPIC, hotel.command.encode())]
        record: Any = ConsumerRecord(
            hotel.dlt, 0, 5, 0, 0, str(saga_id).encode(), value, None, 36, len(value), headers
        )
        loop = MessageLoop(trip.db, trip.orchestrator, bootstrap_servers="x:1", group_id="o")
        assert await loop.process([record])
    first, second = await parked(trip, saga_id)
    assert first["envelope"]["step"] == "flight"
    assert second["envelope"] is None
    assert (second["topic"], second["origin"], second["reason"]) == (
        hotel.dlt,
        hotel.command,
        "invalid envelope",
    )

    await trip.tick_later(monkeypatch, 10_000)
    assert await parked(trip, saga_id) == []
    assert len(await trip.commands(saga_id, "hotel")) == 1
    saga = await row(trip, saga_id)
    assert saga["status"] == SagaStatus.COMPENSATING
    assert saga["reason"] == "hotel: unprocessable by hotel: invalid envelope"
    assert len(await trip.compensations(saga_id, "hotel")) == 1
