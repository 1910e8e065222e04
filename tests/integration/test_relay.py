"""The outbox relay against a real broker and real databases."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from sagaline.apache_kafka import ApacheKafka
from sagaline.broker import EmbeddedBroker
from sagaline.ports import free_port
from services.common import outbox
from services.common.brokers import BrokerKind
from services.common.clock import utcnow
from services.common.db import Database
from services.common.envelope import Envelope
from services.common.inbox import INBOX, claim
from services.common.migrate import upgrade
from services.common.outbox import OUTBOX
from services.common.relay import Relay
from tests.integration.support import (
    BROKERS,
    DATABASES,
    Kafka,
    eventually,
    fresh_database,
    make_broker,
    started_broker,
)

TOPIC = "payment"


Broker = EmbeddedBroker | ApacheKafka


@pytest.fixture(scope="module", params=BROKERS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    with started_broker(request.param, tmp_path_factory.mktemp("relay")) as started:
        yield started


def kind_of(broker: Broker) -> BrokerKind:
    return "kafka" if isinstance(broker, ApacheKafka) else "embedded"


@pytest.fixture(params=DATABASES)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    with fresh_database(server, tmp_path, "relaydb") as url:
        await asyncio.to_thread(upgrade, url, "payment", participant=True)
        database = Database(url)
        yield database
        await database.dispose()


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[Relay]:
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        relay.stop()
        await asyncio.wait_for(task, timeout=10)


def relay_for(db: Database, broker: Broker, **options: Any) -> Relay:
    defaults: dict[str, Any] = {"create_topics": [TOPIC], "partitions": 3}
    defaults["broker"] = kind_of(broker)
    servers = options.pop("bootstrap_servers", broker.bootstrap_servers)
    return Relay(db, service="payment", bootstrap_servers=servers, **defaults | options)


async def write(db: Database, saga_id: uuid.UUID, count: int) -> list[Envelope]:
    """`count` messages of one saga, each committed in its own transaction, in order."""
    envelopes = []
    for attempt in range(1, count + 1):
        envelope = Envelope(type="payment.charge", saga_id=saga_id, saga="order", attempt=attempt)
        async with db.transaction() as session:
            outbox.send(session, TOPIC, [envelope])
        envelopes.append(envelope)
    return envelopes


async def unpublished(db: Database) -> int:
    async with db.engine.connect() as connection:
        query = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
        return int((await connection.execute(query)).scalar_one())


def keyed(saga_id: uuid.UUID) -> Any:
    return lambda record: record.key == str(saga_id).encode()


async def test_publishes_in_commit_order_and_marks_rows(db: Database, broker: Broker) -> None:
    saga_id = uuid.uuid4()
    sent = await write(db, saga_id, 20)

    async with (
        running(relay_for(db, broker)),
        Kafka(broker.bootstrap_servers) as kafka,
    ):
        received = await kafka.read(TOPIC, keyed(saga_id), count=20)
        await eventually(lambda: _zero(unpublished(db)), what="every row marked published")

    assert [Envelope.decode(r.value).id for r in received] == [e.id for e in sent]
    assert {(h, v) for h, v in received[0].headers} >= {("type", b"payment.charge")}


async def test_nothing_is_lost_while_the_broker_is_away(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    port = free_port()
    saga_id = uuid.uuid4()
    sent = await write(db, saga_id, 5)
    late_broker = make_broker(kind_of(broker), tmp_path / "late", port)

    async with running(relay_for(db, late_broker)):
        await asyncio.sleep(0)  # the relay is trying a broker that is not there
        assert await unpublished(db) == 5
        late_broker.start()
        try:
            async with Kafka(late_broker.bootstrap_servers) as kafka:
                received = await kafka.read(TOPIC, keyed(saga_id), count=5, within=60)
            await eventually(lambda: _zero(unpublished(db)), what="rows marked published")
        finally:
            late_broker.stop()

    assert [Envelope.decode(r.value).id for r in received] == [e.id for e in sent]


async def test_purges_published_rows_and_old_inbox_ids_after_their_retention(
    db: Database, broker: Broker
) -> None:
    await write(db, uuid.uuid4(), 3)
    old, recent = uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        await claim(session, [(old, TOPIC), (recent, TOPIC)])
        await session.execute(
            update(INBOX)
            .where(INBOX.c.message_id == old)
            .values(received_at=utcnow() - timedelta(days=8))
        )
    relay = relay_for(db, broker, outbox_retention_s=0, purge_interval_s=0.05)

    async with running(relay):
        await eventually(lambda: _outbox_empty(db), what="published rows purged")

    async with db.engine.connect() as connection:
        kept = set((await connection.execute(select(INBOX.c.message_id))).scalars())
    assert recent in kept and old not in kept


async def test_a_second_relay_waits_while_the_first_holds_the_lock(
    db: Database, broker: Broker
) -> None:
    saga_id = uuid.uuid4()
    first, second = relay_for(db, broker), relay_for(db, broker)
    async with running(first):
        await eventually(lambda: _true(first.is_leader), what="the first relay to lead")
        async with running(second):
            sent = await write(db, saga_id, 10)
            async with Kafka(broker.bootstrap_servers) as kafka:
                received = await kafka.read(TOPIC, keyed(saga_id), count=10)
            assert not second.is_leader
    assert [Envelope.decode(r.value).id for r in received] == [e.id for e in sent], "once each"


async def _zero(count: Any) -> bool:
    return await count == 0


async def _outbox_empty(db: Database) -> bool:
    async with db.engine.connect() as connection:
        return (
            int((await connection.execute(select(func.count()).select_from(OUTBOX))).scalar_one())
            == 0
        )


async def _true(value: bool) -> bool:
    return value
