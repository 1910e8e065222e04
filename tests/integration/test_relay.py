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
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from sagaline.delivery import outbox
from sagaline.delivery.inbox import INBOX, claim
from sagaline.delivery.outbox import OUTBOX
from sagaline.delivery.relay import loop as relay_module
from sagaline.delivery.relay.loop import Relay
from sagaline.domain.clock import utcnow
from sagaline.domain.envelope import Envelope, header_value
from sagaline.kafka.brokers import BrokerKind
from sagaline.kafka.clients import make_producer
from sagaline.lab.launchers.apache_kafka import ApacheKafka
from sagaline.lab.launchers.embedded_broker import EmbeddedBroker
from sagaline.lab.ports import free_port
from sagaline.registration import find, upgrade
from sagaline.storage.db import Database
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
        await asyncio.to_thread(upgrade, find("payment"), url)
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


async def test_a_commit_wakes_the_waiting_relay(db: Database, broker: Broker) -> None:
    """A relay that would poll only every 30 s publishes a commit at once: PostgreSQL NOTIFYs
    it, an SQLite database's service sends it a datagram."""
    relay = relay_for(db, broker, poll_interval_s=30, listen_timeout_s=30)
    async with running(relay):
        await write(db, uuid.uuid4(), 1)  # read by the relay's first pass, or woken; then it waits
        await eventually(lambda: _zero(unpublished(db)), what="the first row published")
        await write(db, uuid.uuid4(), 1)
        await eventually(lambda: _zero(unpublished(db)), within=5, what="the woken relay")


async def test_a_batch_is_bounded_in_bytes_and_the_rest_follows_at_once(
    db: Database, broker: Broker
) -> None:
    """Twenty rows of a few hundred bytes under a 1,000-byte budget: several batches, each within
    the budget but for the row that crosses it, each followed at once by the next (a wake-up
    would come only after 30 s)."""
    saga_id = uuid.uuid4()
    sent = await write(db, saga_id, 20)
    relay = relay_for(db, broker, batch_bytes=1000, poll_interval_s=30, listen_timeout_s=30)
    batches: list[list[int]] = []  # the value sizes of each batch
    produce = relay._produce

    async def counted(producer: Any, rows: Any) -> Any:
        batches.append([len(row.value) for row in rows])
        return await produce(producer, rows)

    relay._produce = counted  # type: ignore[method-assign]
    async with running(relay), Kafka(broker.bootstrap_servers) as kafka:
        received = await kafka.read(TOPIC, keyed(saga_id), count=20)
        await eventually(lambda: _zero(unpublished(db)), within=10, what="every row published")

    assert [Envelope.decode(r.value).id for r in received] == [e.id for e in sent]
    assert sum(map(len, batches)) == 20 and len(batches) > 1, batches
    assert all(sum(batch[:-1]) < 1000 for batch in batches), batches


async def test_nothing_is_lost_while_the_broker_is_away(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    port = free_port()
    saga_id = uuid.uuid4()
    sent = await write(db, saga_id, 5)
    late_broker = make_broker(kind_of(broker), tmp_path / "late", port)
    relay = relay_for(db, late_broker)

    async with running(relay):
        # The relay has tried, twice, a broker that is not there: nothing is marked.
        await eventually(lambda: _true(relay.failures >= 2), what="two failed attempts")
        assert await unpublished(db) == 5
        late_broker.start()
        try:
            async with Kafka(late_broker.bootstrap_servers) as kafka:
                received = await kafka.read(TOPIC, keyed(saga_id), count=5, within=60)
            await eventually(lambda: _zero(unpublished(db)), what="rows marked published")
        finally:
            late_broker.stop()

    assert [Envelope.decode(r.value).id for r in received] == [e.id for e in sent]


DEAD_LETTERS = "payment.dlt"


class Refusing:
    """A producer that fails the sends of the records `refuse` picks (the failure in the send's
    future, as a broker's answer is), `times` times each; everything else goes to the broker."""

    def __init__(
        self, producer: Any, refuse: Any, error: Exception, times: int, refused: dict[bytes, int]
    ) -> None:
        self.producer, self.refuse, self.error, self.times = producer, refuse, error, times
        self.refused = refused  # shared by the producers the relay makes one after the other

    async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[Any]:
        if topic == TOPIC and self.refuse(value) and self.refused.get(value, 0) < self.times:
            self.refused[value] = self.refused.get(value, 0) + 1
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(self.error)
            return failed
        return await self.producer.send(topic, value=value, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


def refusing(
    monkeypatch: pytest.MonkeyPatch, refuse: Any, error: Exception, times: int
) -> list[Refusing]:
    made: list[Refusing] = []
    refused: dict[bytes, int] = {}

    def make(*args: Any, **options: Any) -> Refusing:
        made.append(Refusing(make_producer(*args, **options), refuse, error, times, refused))
        return made[-1]

    monkeypatch.setattr(relay_module, "make_producer", make)
    return made


async def published_at(db: Database) -> list[Any]:
    """Each row's published_at (None if not yet), in seq order."""
    async with db.engine.connect() as connection:
        query = select(OUTBOX.c.published_at).order_by(OUTBOX.c.seq)
        return list((await connection.execute(query)).scalars())


async def test_a_row_is_marked_only_after_every_earlier_row_of_its_key(
    db: Database, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second of three rows of a key is not acknowledged the first time: the third, although
    acknowledged, is not marked published before the second is."""
    saga_id = uuid.uuid4()
    sent = await write(db, saga_id, 3)
    second = sent[1].encode()
    made = refusing(monkeypatch, lambda value: value == second, KafkaTimeoutError(), times=1)

    async with running(relay_for(db, broker)):
        await eventually(lambda: _zero(unpublished(db)), what="every row marked published")

    assert made and made[0].refused == {second: 1}, "the second row was refused once"
    marked = await published_at(db)
    assert marked == sorted(marked), f"rows of one key marked out of order: {marked}"
    async with Kafka(broker.bootstrap_servers) as kafka:
        received = await kafka.read(TOPIC, keyed(saga_id), count=3)
    assert [Envelope.decode(r.value).id for r in received][:2] == [sent[0].id, sent[2].id]


@pytest.mark.parametrize("how", ["too large to send", "refused by the broker"])
async def test_a_row_the_broker_always_refuses_is_dead_lettered_and_the_outbox_moves_on(
    db: Database, broker: Broker, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A row refused for good goes to the owner's dead-letter topic with the reason, is counted,
    and the rows behind it (of its key and of others) are published in order."""
    saga_id, other_saga = uuid.uuid4(), uuid.uuid4()
    blob = "x" * 2**21 if how == "too large to send" else "ordinary"
    before = await write(db, saga_id, 1)
    refused = Envelope(type="payment.charge", saga_id=saga_id, saga="order", payload={"b": blob})
    async with db.transaction() as session:
        outbox.send(session, TOPIC, [refused])
    after = await write(db, saga_id, 2)
    await write(db, other_saga, 1)
    value = refused.encode()
    if how == "refused by the broker":
        refusing(monkeypatch, lambda v: v == value, MessageSizeTooLargeError(), times=10**6)
    counted = _dead_lettered_count()

    async with (
        running(relay_for(db, broker, create_topics=[TOPIC, DEAD_LETTERS])),
        Kafka(broker.bootstrap_servers) as kafka,
    ):
        dead = await kafka.read(DEAD_LETTERS, keyed(saga_id))
        received = await kafka.read(TOPIC, keyed(saga_id), count=3)
        await kafka.read(TOPIC, keyed(other_saga))
        await eventually(lambda: _zero(unpublished(db)), what="every row marked published")

    assert [Envelope.decode(r.value).id for r in received] == [before[0].id] + [e.id for e in after]
    assert len(dead) == 1
    headers = dead[0].headers
    assert "MessageSizeTooLargeError" in (header_value(headers, "dlt.reason") or "")
    assert header_value(headers, "dlt.origin.topic") == TOPIC
    assert header_value(headers, "type") == "payment.charge", "the original headers are kept"
    if len(value) > LIMIT:  # cut, so that the dead letter itself can be published
        assert dead[0].value == value[:LIMIT]
        assert header_value(headers, "dlt.truncated") == str(len(value))
    else:
        assert dead[0].value == value
    assert _dead_lettered_count() == counted + 1


LIMIT = 256 * 1024  # the relay's max_dead_letter_bytes default


def _dead_lettered_count() -> float:
    return (
        REGISTRY.get_sample_value(
            "sagaline_relay_dead_lettered_total", {"service": "payment", "topic": TOPIC}
        )
        or 0.0
    )


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


async def test_rows_written_after_a_purge_emptied_the_outbox_are_published(
    db: Database, broker: Broker
) -> None:
    """SQLite hands out the seq of a purged last row again; a relay that reads past the last
    seq it sent must not skip the new rows (it reads from the first unmarked row after a purge)."""
    first, second = uuid.uuid4(), uuid.uuid4()
    await write(db, first, 3)
    relay = relay_for(db, broker, outbox_retention_s=0, purge_interval_s=0.05)
    async with running(relay), Kafka(broker.bootstrap_servers) as kafka:
        await eventually(lambda: _outbox_empty(db), what="published rows purged")
        sent = await write(db, second, 2)
        received = await kafka.read(TOPIC, keyed(second), count=2)
    assert [Envelope.decode(r.value).id for r in received] == [e.id for e in sent]


async def test_sqlite_marks_acknowledged_rows_in_batches_postgresql_at_once(
    db: Database, broker: Broker
) -> None:
    """Marking takes SQLite's one write lock, so an SQLite relay marks what was acknowledged
    at most every `mark_delay_s` (and when it stops); PostgreSQL marks each batch."""
    await write(db, uuid.uuid4(), 1)  # published and marked by the first pass (it purges)
    relay = relay_for(db, broker, mark_delay_s=30)
    async with running(relay), Kafka(broker.bootstrap_servers) as kafka:
        await eventually(lambda: _zero(unpublished(db)), what="the first row marked")
        saga_id = uuid.uuid4()
        await write(db, saga_id, 3)
        await kafka.read(TOPIC, keyed(saga_id), count=3)
        if db.sqlite:
            assert await unpublished(db) == 3, "acknowledged rows marked before their delay"
        else:
            await eventually(lambda: _zero(unpublished(db)), what="each batch marked at once")
    assert await unpublished(db) == 0, "acknowledged rows left unmarked when the relay stopped"


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
