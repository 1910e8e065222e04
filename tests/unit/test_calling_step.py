"""A calling step (`sagaline.sdk.Step(..., calls=CallPolicy(...))`), driven as the consumer and
its worker drive it, on a real SQLite database: the call is made outside the consumer's
transaction with a stable idempotency key, repeated with that key after a failure or a lost
record, and its result recorded once with its reply; a compensation that comes first, during the
call, or after it gets the right acknowledgement; an apply that keeps failing is abandoned and
cancelled by its key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select, update

from sagaline.delivery.calling_participant import CallingParticipant
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.participant import OUTCOMES
from sagaline.delivery.step_calls import STEP_CALLS
from sagaline.domain.clock import utcnow
from sagaline.domain.definition import default_definition_path, load_definition
from sagaline.sdk import CallContext, CallPolicy, Rejected, Step
from sagaline.settings import Settings
from sagaline.storage.db import Database
from tests.unit import calling_harness as harness
from tests.unit.calling_harness import consume, drain, owed, replies, step_database

DEFINITION = load_definition(default_definition_path())


class Book(BaseModel):
    traveller: str


@dataclass
class Partner:
    """What the step's functions saw, and what they are told to do next."""

    apply_keys: list[str] = field(default_factory=list)
    undo_calls: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    failures_left: int = 0
    refuse: bool = False
    hold: asyncio.Event | None = None  # apply waits on it (a call in flight)
    entered: asyncio.Event = field(default_factory=asyncio.Event)


def trip_step(partner: Partner, max_attempts: int = 5) -> Step[Book]:
    trip = Step("trip", command=Book, calls=CallPolicy(
        timeout_seconds=5, max_attempts=max_attempts, backoff_seconds=0.001
    ))  # fmt: skip

    @trip.apply
    async def book(ctx: CallContext, command: Book) -> dict[str, Any] | Rejected:
        partner.apply_keys.append(ctx.idempotency_key)
        assert ctx.http.headers["Idempotency-Key"] == ctx.idempotency_key
        partner.entered.set()
        if partner.hold is not None:
            await partner.hold.wait()
        if partner.failures_left:
            partner.failures_left -= 1
            raise ConnectionError("partner unreachable")
        if partner.refuse:
            return Rejected("no seat left")
        return {"booking": f"B-{command.traveller}"}

    @trip.undo
    async def cancel(ctx: CallContext, result: dict[str, Any] | None) -> None:
        partner.undo_calls.append((ctx.idempotency_key, ctx.apply_key, result))

    return trip


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with step_database(tmp_path / "trip.db") as database:
        yield database


def participant(partner: Partner, max_attempts: int = 5) -> CallingParticipant:
    settings = Settings(timer_interval_s=0.01)
    handler = trip_step(partner, max_attempts).participant(DEFINITION, settings)
    assert isinstance(handler, CallingParticipant)
    return handler


def message(
    handler: CallingParticipant, kind: str, saga_id: uuid.UUID, attempt: int = 1
) -> Incoming:
    return harness.message(handler, kind, saga_id, {"traveller": "ada"}, attempt)


async def outcome(db: Database, saga_id: uuid.UUID) -> dict[str, Any]:
    async with db.transaction() as session:
        rows = await session.execute(select(OUTCOMES).where(OUTCOMES.c.saga_id == saga_id))
        return dict(rows.mappings().one())


async def test_the_call_is_made_after_the_transaction_with_the_sagas_key_and_recorded_once(
    db: Database,
) -> None:
    partner, saga_id = Partner(), uuid.uuid4()
    handler = participant(partner)
    await consume(db, handler, message(handler, "command", saga_id))
    assert partner.apply_keys == [], "nothing is called inside the consumer's transaction"
    assert [row["saga_id"] for row in await owed(db)] == [saga_id]
    assert await replies(db) == [], "the reply waits for the call's result"

    await consume(db, handler, message(handler, "command", saga_id, attempt=2))
    assert len(await owed(db)) == 1 and await replies(db) == [], "a re-sent command is absorbed"

    await drain(db, handler)
    assert partner.apply_keys == [f"{saga_id}:trip:apply"]
    (done,) = await replies(db)
    assert (done.type, done.payload, done.attempt) == ("trip.executed", {"booking": "B-ada"}, 1)
    assert (await outcome(db, saga_id))["status"] == "APPLIED"

    await consume(db, handler, message(handler, "command", saga_id, attempt=3))
    again = await replies(db)
    assert len(again) == 2 and again[1].id == done.id, "a later command gets the same reply"
    assert len(partner.apply_keys) == 1, "and no second call"


async def test_a_failed_call_is_tried_again_with_the_same_key(db: Database) -> None:
    partner, saga_id = Partner(failures_left=2), uuid.uuid4()
    handler = participant(partner)
    await consume(db, handler, message(handler, "command", saga_id))
    await drain(db, handler)
    assert partner.apply_keys == [f"{saga_id}:trip:apply"] * 3
    assert [reply.type for reply in await replies(db)] == ["trip.executed"]


async def test_a_call_whose_record_was_lost_is_repeated_with_the_same_key(db: Database) -> None:
    partner, saga_id = Partner(), uuid.uuid4()
    first = participant(partner)
    await consume(db, first, message(first, "command", saga_id))
    (claimed,) = await first._claim(db)  # the worker claims the call and makes it...
    await first.call_apply(saga_id, Book(traveller="ada"), claimed.calls)
    # ...and its process dies before the record: the row stays, claimed until its lease ends.
    assert await replies(db) == []
    async with db.transaction() as session:  # the lease runs out
        await session.execute(update(STEP_CALLS).values(due_at=utcnow()))
    restarted = participant(partner)
    await drain(db, restarted)
    assert partner.apply_keys == [f"{saga_id}:trip:apply"] * 2, "repeated, with the same key"
    assert [reply.type for reply in await replies(db)] == ["trip.executed"]


async def test_a_compensation_before_any_try_leaves_a_tombstone_and_nothing_is_called(
    db: Database,
) -> None:
    partner, saga_id = Partner(), uuid.uuid4()
    handler = participant(partner)
    await consume(db, handler, message(handler, "command", saga_id))
    await consume(db, handler, message(handler, "compensation", saga_id))
    assert await owed(db) == []
    await handler.run_due_calls(db)
    assert partner.apply_keys == [] and partner.undo_calls == []
    (ack,) = await replies(db)
    assert ack.type == "trip.compensated" and "nothing to undo" in ack.payload["effect"]
    await consume(db, handler, message(handler, "command", saga_id, attempt=2))
    assert (await replies(db))[-1].type == "trip.failed", "a late command is refused"


async def test_a_compensation_during_the_call_waits_for_it_then_undoes_with_its_result(
    db: Database,
) -> None:
    partner, saga_id = Partner(hold=asyncio.Event()), uuid.uuid4()
    handler = participant(partner)
    await consume(db, handler, message(handler, "command", saga_id))
    worker = asyncio.create_task(handler.run_due_calls(db))
    await partner.entered.wait()  # the call is in flight, no transaction open
    await consume(db, handler, message(handler, "compensation", saga_id, attempt=2))
    assert await replies(db) == [], "the acknowledgement waits for the call"
    partner.hold.set()
    await worker
    await drain(db, handler)
    done, ack = await replies(db)
    assert done.type == "trip.executed"
    assert (ack.type, ack.attempt, ack.payload["effect"]) == ("trip.compensated", 2, "undone")
    key = f"{saga_id}:trip"
    assert partner.undo_calls == [(f"{key}:undo", f"{key}:apply", {"booking": "B-ada"})]


async def test_a_compensation_after_a_refusal_has_nothing_to_undo(db: Database) -> None:
    partner, saga_id = Partner(refuse=True), uuid.uuid4()
    handler = participant(partner)
    await consume(db, handler, message(handler, "command", saga_id))
    await drain(db, handler)
    await consume(db, handler, message(handler, "compensation", saga_id))
    failed, ack = await replies(db)
    assert (failed.type, failed.payload) == ("trip.failed", {"reason": "no seat left"})
    assert "nothing to undo" in ack.payload["effect"] and partner.undo_calls == []


async def test_an_apply_that_keeps_failing_is_abandoned_and_cancelled_by_its_key(
    db: Database,
) -> None:
    partner, saga_id = Partner(failures_left=100), uuid.uuid4()
    handler = participant(partner, max_attempts=3)
    await consume(db, handler, message(handler, "command", saga_id))
    await drain(db, handler)
    assert len(partner.apply_keys) == 3
    key = f"{saga_id}:trip"
    assert partner.undo_calls == [(f"{key}:undo", f"{key}:apply", None)]
    (failed,) = await replies(db)
    assert failed.type == "trip.failed"
    assert failed.payload["reason"].startswith("abandoned after 3 tries (ConnectionError")
    assert (await outcome(db, saga_id))["status"] == "REJECTED"
