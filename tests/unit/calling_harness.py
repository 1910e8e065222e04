"""Driving a calling step as the consumer loop and its worker do, on a real SQLite database:
the messages the loop would hand it, one consumer transaction over them, the worker run until
nothing is owed, and what was replied (the outbox) and is still owed (`step_call`)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from sagaline.delivery.calling_participant import CallingParticipant
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.step_calls import STEP_CALLS
from sagaline.domain.envelope import Envelope
from sagaline.storage import migrate
from sagaline.storage.db import Database
from sagaline.storage.tables import OutboxMessage, table_of

OUTBOX = table_of(OutboxMessage)


@contextlib.asynccontextmanager
async def step_database(path: Path) -> AsyncIterator[Database]:
    """A step's database at `path`, migrated as `sagaline migrate` does for a step."""
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url, None, participant=True)
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()


def message(
    handler: CallingParticipant,
    kind: str,
    saga_id: uuid.UUID,
    payload: dict[str, Any],
    attempt: int = 1,
) -> Incoming:
    """A `command` (with `payload`) or a `compensation` of the handler's step, as consumed."""
    command = kind == "command"
    envelope = Envelope(
        type=handler.types.command if command else handler.types.compensate,
        saga_id=saga_id,
        saga=handler.definition.name,
        step=handler.step,
        attempt=attempt,
        payload=payload if command else {"result": None},
    )
    topic = handler.topic.command if command else handler.topic.compensation
    value = envelope.model_dump_json().encode()
    record = ConsumerRecord(
        topic, 0, 0, 0, 0, str(saga_id).encode(), value, None, 0, len(value), ()
    )
    return Incoming(record, envelope)


async def consume(db: Database, handler: CallingParticipant, *messages: Incoming) -> None:
    """One consumer transaction over `messages`, as the loop runs it."""
    async with db.transaction() as session:
        await handler.prepare(session, list(messages))
        for incoming in messages:
            await handler.handle(session, incoming)


async def replies(db: Database) -> list[Envelope]:
    async with db.transaction() as session:
        rows = await session.execute(select(OUTBOX.c.value).order_by(OUTBOX.c.seq))
        return [Envelope.model_validate_json(value) for value in rows.scalars()]


async def owed(db: Database) -> list[dict[str, Any]]:
    async with db.transaction() as session:
        return [dict(row) for row in (await session.execute(select(STEP_CALLS))).mappings()]


async def drain(db: Database, handler: CallingParticipant, passes: int = 400) -> None:
    """Run the worker until nothing is owed (each pass makes every due call)."""
    for _ in range(passes):
        if not await owed(db):
            return
        await handler.run_due_calls(db)
    raise AssertionError(f"still owed: {await owed(db)}")
