"""A consumer loop blocked on an await that never returns is cancelled and starts again; one that
meets a CancelledError nobody asked for (let out by the client library) starts again too."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery.consumer import Incoming, MessageLoop
from sagaline.delivery.outbox import OUTBOX
from sagaline.delivery.participant import Participant
from sagaline.domain.definition import default_definition_path, load_definition
from sagaline.kafka.brokers import BrokerKind
from sagaline.services.payment.participant import payment
from sagaline.settings import Settings
from tests.integration.support import BROKERS, Kafka, broker_and_payment_database, eventually

DEFINITION = load_definition(default_definition_path())


class PaymentHandler:
    """The payment step's participant, with a hook around its `prepare`."""

    def __init__(self) -> None:
        self.inner: Participant = payment.participant(DEFINITION, Settings())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        await self.inner.prepare(session, batch)


class HangsOnce(PaymentHandler):
    """The payment participant, except that its first batch waits forever."""

    hung = 0

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        if not self.hung:
            self.hung += 1
            await asyncio.Event().wait()
        await super().prepare(session, batch)


class CancelledOnce(PaymentHandler):
    """The payment participant, except that its first batch meets a CancelledError that nobody
    asked for: what escapes aiokafka when it awaits one of its own tasks it cancelled."""

    cancelled = 0

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        if not self.cancelled:
            self.cancelled += 1
            inner = asyncio.create_task(asyncio.Event().wait())
            await asyncio.sleep(0)
            inner.cancel()
            await inner
        await super().prepare(session, batch)


async def poison_handled_once(
    tmp_path: Path, kind: BrokerKind, handler: PaymentHandler, wedged_s: float = 60
) -> None:
    """Run a loop with `handler`, send it one poison record, and wait until the record is
    dead-lettered, exactly once, with the loop still running."""
    async with broker_and_payment_database(tmp_path, kind) as (bootstrap_servers, db):
        loop = MessageLoop(
            db,
            handler,
            bootstrap_servers=bootstrap_servers,
            broker=kind,
            group_id=f"{type(handler).__name__}-test",
            create_topics=DEFINITION.topics(),
            partitions=1,
            wedged_s=wedged_s,
        )
        task = asyncio.create_task(loop.run())
        try:
            async with Kafka(bootstrap_servers) as kafka:
                await kafka.send("payment", b"not json", str(uuid.uuid4()).encode())

            async def dead_lettered() -> int:
                async with db.transaction() as session:
                    count = select(func.count()).select_from(OUTBOX)
                    return int((await session.execute(count)).scalar_one())

            assert await eventually(dead_lettered, within=60, what="the record handled") == 1
            assert await dead_lettered() == 1, "handled once: the cancelled batch left nothing"
            assert not task.done(), "the loop goes on"
        finally:
            loop.stop()
            await asyncio.wait_for(task, timeout=15)


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_blocked_loop_is_cancelled_and_its_batch_handled_by_a_new_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: BrokerKind
) -> None:
    caplog.set_level(logging.WARNING, logger="sagaline.delivery.consumer")
    handler = HangsOnce()
    # Short, to be quick; on Kafka longer than a group join (3 s of initial delay there).
    await poison_handled_once(tmp_path, kind, handler, wedged_s=3 if kind == "embedded" else 10)
    assert handler.hung == 1
    wedged = [r.getMessage() for r in caplog.records if "no progress" in r.getMessage()]
    # (A 3 s limit may also cut the next client's group join short; 60 s would not.)
    assert wedged and "in prepare" in wedged[0], "the log says where the loop was blocked"


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_cancellation_from_inside_the_client_starts_a_new_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: BrokerKind
) -> None:
    caplog.set_level(logging.WARNING, logger="sagaline.delivery.consumer")
    handler = CancelledOnce()
    await poison_handled_once(tmp_path, kind, handler)
    assert handler.cancelled == 1
    said = [r.getMessage() for r in caplog.records if "cancelled inside" in r.getMessage()]
    assert said, "the log says why the client was replaced"
