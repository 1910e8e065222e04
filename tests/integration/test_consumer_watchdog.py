"""A consumer loop blocked on an await that never returns is cancelled and starts again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.brokers import BrokerKind
from services.common.consumer import Incoming, MessageLoop
from services.common.definition import default_definition_path, load_definition
from services.common.outbox import OUTBOX
from services.payment.participant import PaymentParticipant
from tests.integration.support import BROKERS, Kafka, broker_and_payment_database, eventually


class HangsOnce(PaymentParticipant):
    """The payment participant, except that its first batch waits forever."""

    hung = 0

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        if not self.hung:
            self.hung += 1
            await asyncio.Event().wait()
        await super().prepare(session, batch)


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_blocked_loop_is_cancelled_and_its_batch_handled_by_a_new_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: BrokerKind
) -> None:
    definition = load_definition(default_definition_path())
    caplog.set_level(logging.WARNING, logger="services.common.consumer")
    async with broker_and_payment_database(tmp_path, kind) as (bootstrap_servers, db):
        handler = HangsOnce(definition)
        loop = MessageLoop(
            db,
            handler,
            bootstrap_servers=bootstrap_servers,
            broker=kind,
            group_id="watchdog-test",
            create_topics=definition.topics(),
            partitions=1,
            # Short, to be quick; on Kafka longer than a group join (3 s of initial delay there).
            wedged_s=3 if kind == "embedded" else 10,
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
            assert handler.hung == 1
            wedged = [r.getMessage() for r in caplog.records if "no progress" in r.getMessage()]
            # (A 3 s limit may also cut the next client's group join short; 60 s would not.)
            assert wedged and "in prepare" in wedged[0], "the log says where the loop was blocked"
            assert await dead_lettered() == 1, "handled once: the cancelled batch left nothing"
        finally:
            loop.stop()
            await asyncio.wait_for(task, timeout=15)
