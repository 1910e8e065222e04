"""The outbox relay: publishes what the service committed, in commit order, keyed by saga id.

It reads unpublished rows in `seq` order without the write lock, produces them in a batch with
acks=all, and marks rows published only after the broker acknowledged them (on SQLite a few
batches at a time, see `sagaline.delivery.relay.marks`); which rows a batch settles is
`sagaline.delivery.relay.settled`. It wakes on PostgreSQL NOTIFY, or on an SQLite database on a
datagram from its service (`sagaline.storage.wake`), with polling as the fallback, and purges
published outbox rows and old inbox ids after their retention (`sagaline.delivery.relay.purge`).
Only the relay holding the leader lock publishes (`sagaline.delivery.relay.leadership`), so
several relays on one database never reorder one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from sagaline.delivery.dead_letter import DLT_REASON, dead_letter_copy
from sagaline.delivery.errors import is_transient
from sagaline.delivery.outbox import OUTBOX, decode_headers, encode_headers
from sagaline.delivery.relay.backlog import BacklogGauges
from sagaline.delivery.relay.leadership import leadership_for
from sagaline.delivery.relay.marks import AcknowledgedRows
from sagaline.delivery.relay.purge import purge
from sagaline.delivery.relay.settled import (
    ACKNOWLEDGED,
    BrokerAnswer,
    Refused,
    describe_error,
    refused_for_good,
    settled,
)
from sagaline.delivery.relay.statements import UNPUBLISHED, UnpublishedRow, mark_published
from sagaline.domain.clock import utcnow
from sagaline.domain.envelope import header_value
from sagaline.domain.messages import ORDER_SAGA, SagaTopics
from sagaline.kafka.brokers import BrokerKind, broker_for
from sagaline.kafka.clients import ensure_topics, make_producer, start, stop
from sagaline.kafka.security import PLAINTEXT, KafkaSecurity
from sagaline.storage import direct_sql
from sagaline.storage.db import Database, next_transaction_writes
from sagaline.storage.sqlite_driver import Connection as SQLiteConnection
from sagaline.telemetry import tracing
from sagaline.telemetry.metrics import (
    DEAD_LETTERS,
    PUBLISHED,
    RELAY_DEAD_LETTERED,
    DeadLetterReason,
)

log = logging.getLogger(__name__)
_ORCHESTRATOR_OWNED = frozenset({"orchestrator", "order"})  # of the order saga


class Relay:
    """One service's outbox relay: read, publish, mark; while it leads its database."""

    def __init__(
        self,
        db: Database,
        *,
        service: str,
        bootstrap_servers: str,
        batch_size: int = 2000,
        batch_bytes: int = 16 * 1024 * 1024,
        poll_interval_s: float = 0.02,
        listen_timeout_s: float = 1.0,
        outbox_retention_s: float = 3600,
        inbox_retention_s: float = 7 * 24 * 3600,
        purge_interval_s: float = 60,
        linger_s: float = 0.0,
        mark_delay_s: float = 0.1,
        create_topics: Sequence[str] = (),
        partitions: int = 6,
        replicas: int = 1,
        security: KafkaSecurity = PLAINTEXT,
        broker: BrokerKind = "kafka",
        dead_letter_topic: str | None = None,
        saga: str = ORDER_SAGA,
        max_dead_letter_bytes: int = 256 * 1024,
    ) -> None:
        self.db = db
        self.service = service
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.producer_options = broker_for(broker, f"relay {service}").producer_options()
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self._more = False  # the last batch was full: read again without waiting
        self.poll_interval_s = poll_interval_s
        self.listen_timeout_s = listen_timeout_s
        self.outbox_retention = timedelta(seconds=outbox_retention_s)
        self.inbox_retention = timedelta(seconds=inbox_retention_s)
        self.purge_interval_s = purge_interval_s
        self.linger_s = linger_s
        self.create_topics = list(create_topics)
        self.partitions = partitions
        self.replicas = replicas
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.leadership = leadership_for(db, service, stopping=self._stopping, wake=self._wake)
        self.failures = 0  # attempts that failed (broker or database away) and were retried
        self._dead_letter_topic = dead_letter_topic
        self.saga = saga
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.backlog = BacklogGauges(service)
        self._driver: SQLiteConnection | None = None  # SQLite: reads go straight to the driver
        # SQLite marks acknowledged rows in batches (see relay.marks); PostgreSQL at once.
        self.acknowledged = AcknowledgedRows(
            mark_delay_s if db.sqlite else 0.0, batch_size, seq_is_commit_order=db.sqlite
        )

    @property
    def dead_letter_topic(self) -> str:
        """Where this service's refused rows go: as given (`sagaline relay` gives its saga's,
        `SagaTopics.dead_letters_of`), else, for the order saga's services, a step's own `.dlt`
        and `orchestrator.dlt` for the orchestrator and the order service."""
        if self._dead_letter_topic is not None:
            return self._dead_letter_topic
        topics = SagaTopics(self.saga)
        return topics.dlt if self.service in _ORCHESTRATOR_OWNED else topics.step(self.service).dlt

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            log.info("relay %s: stopped", self.service)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.leadership.held():
                    if self._stopping.is_set():
                        return
                    await self._publish_while_leader()
            except (KafkaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.failures += 1
                log.warning("relay %s: %s; retrying", self.service, exc)
                await self._sleep(1.0)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.failures += 1
                log.warning("relay %s: database unavailable (%s); retrying", self.service, exc)
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _publish_while_leader(self) -> None:
        if self.create_topics:  # a producer would otherwise auto-create them with other settings
            await ensure_topics(
                self.bootstrap_servers,
                self.create_topics,
                partitions=self.partitions,
                replicas=self.replicas,
                security=self.security,
            )
        producer = make_producer(self.bootstrap_servers, self.security, **self.producer_options)
        await start(producer, self.security, self.bootstrap_servers)
        try:
            async with self.db.engine.connect() as connection:
                if self.db.sqlite:
                    self._driver = await direct_sql.driver_of_connection(connection)
                else:  # each statement its own transaction: no BEGIN/COMMIT trips
                    connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                self.acknowledged.forget()
                await self._publish_loop(producer, connection)
                await self._mark(connection, self.acknowledged.take())
        finally:
            self._driver = None
            self.backlog.clear()
            await stop(producer, f"relay {self.service}")

    async def _publish_loop(self, producer: AIOKafkaProducer, connection: AsyncConnection) -> None:
        next_purge = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set() and self.is_leader:
            self._wake.clear()
            await self.publish_once(producer, connection)
            if loop.time() >= next_purge:
                # A purge can delete the highest seq, which SQLite then hands out again: the
                # next read starts from the first unmarked row, whatever its seq.
                await self._mark(connection, self.acknowledged.take())
                self.acknowledged.forget()
                await purge(
                    connection,
                    outbox_retention=self.outbox_retention,
                    inbox_retention=self.inbox_retention,
                )
                next_purge = loop.time() + self.purge_interval_s
            if self._more:  # a full batch: more rows are waiting, no need to be woken
                continue
            polling = self.db.sqlite and not self.leadership.woken
            timeout = self.poll_interval_s if polling else self.listen_timeout_s
            timeout = max(0.0, min(timeout, self.acknowledged.due_in_s()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                if self.linger_s:  # commits arriving together share one read and one batch
                    await asyncio.sleep(self.linger_s)

    async def publish_once(self, producer: AIOKafkaProducer, connection: AsyncConnection) -> int:
        """Publish one batch; returns how many rows were acknowledged (or dead-lettered)."""
        limits = {
            "limit": self.batch_size,
            "max_bytes": self.batch_bytes,
            "after": self.acknowledged.after,
        }
        rows = await self._unpublished(connection, limits)
        # The last row crossing the byte budget means the budget, not the backlog, ended it.
        self._more = len(rows) >= self.batch_size or bool(
            rows and rows[-1].through >= self.batch_bytes
        )
        if not rows:
            if self.acknowledged.due():
                await self._mark(connection, self.acknowledged.take())
            return 0
        answers = await self._produce(producer, rows)
        done, refused = settled(rows, answers)
        if len(done) == len(rows) and not refused:
            self.acknowledged.add(done, after=rows[-1].seq)
            if self.acknowledged.due():
                await self._mark(connection, self.acknowledged.take())
        else:
            copies = (self._dead_letter(row, reason) for row, reason in refused)
            letters = [letter for letter in copies if letter is not None]
            await self._mark(connection, self.acknowledged.take() + done, letters)
            self.acknowledged.forget()  # what is left is read again from the first unmarked row
            for row, reason in refused:
                log.error(
                    "relay %s: message %s to %s refused for good (%s); %s",
                    self.service,
                    row.seq,
                    row.topic,
                    reason,
                    "a dead letter: dropped"
                    if header_value(decode_headers(row.headers), DLT_REASON) is not None
                    else f"dead-lettered to {self.dead_letter_topic}",
                )
                RELAY_DEAD_LETTERED.labels(self.service, row.topic).inc()
                DEAD_LETTERS.labels(self.service, DeadLetterReason.REFUSED_BY_BROKER).inc()
        PUBLISHED.labels(self.service).inc(len(done) - len(refused))
        if len(done) < len(rows):
            raise KafkaError(f"{len(rows) - len(done)} messages not acknowledged")
        return len(done)

    async def _unpublished(
        self, connection: AsyncConnection, limits: dict[str, int]
    ) -> Sequence[Any]:
        """The next batch's rows (and, when due, the backlog gauges).

        On SQLite the read is one statement on the driver, outside any transaction: SQLite reads
        it from one snapshot, and the relay, woken once per commit at low load, pays neither a
        BEGIN and ROLLBACK nor SQLAlchemy's execution machinery around a call of microseconds.
        """
        if self._driver is not None:
            compiled = direct_sql.compiled(UNPUBLISHED, connection.dialect)
            found = await direct_sql.fetch(self._driver, compiled, limits)
            rows: Sequence[Any] = [UnpublishedRow(**row) for row in found]
        else:
            await next_transaction_writes(connection, False)
            rows = (await connection.execute(UNPUBLISHED, limits)).all()
        if self.backlog.due():
            await next_transaction_writes(connection, False)
            await self.backlog.measure(connection, self.acknowledged.after)
        if connection.in_transaction():
            await connection.rollback()
        return rows

    async def _mark(
        self, connection: AsyncConnection, seqs: list[int], letters: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Mark rows published, and write the dead letters of those refused, in one transaction."""
        if not seqs:
            return
        await next_transaction_writes(connection, True)
        if letters:
            await connection.execute(insert(OUTBOX), letters)
        await connection.execute(
            mark_published(connection.dialect.name), {"values": seqs, "published_at": utcnow()}
        )
        await connection.commit()

    def _dead_letter(self, row: Any, reason: str) -> dict[str, Any] | None:
        """An outbox row carrying a refused row to the owner's dead-letter topic; None for a row
        that is a dead letter already (its copy could be refused again, for ever): it is dropped,
        logged and counted."""
        if header_value(decode_headers(row.headers), DLT_REASON) is not None:
            return None
        value, headers = dead_letter_copy(
            row.value,
            decode_headers(row.headers),
            f"refused by the broker: {reason}",
            origin=(row.topic, -1, row.seq),  # never on a partition: the offset is the outbox seq
            max_bytes=self.max_dead_letter_bytes,
        )
        return {
            "message_id": uuid.uuid4(),
            "topic": self.dead_letter_topic,
            "key": row.key,
            "value": value,
            "headers": encode_headers(headers),
            "created_at": utcnow(),
            "published_at": None,
        }

    async def _produce(
        self, producer: AIOKafkaProducer, rows: Sequence[Any]
    ) -> dict[int, BrokerAnswer]:
        """Send every row; the broker's answer to each, by seq: acknowledged (None), refused for
        good (the reason), or none (not acknowledged, to be sent again). After a row of a key
        that was not sent, later rows of that key are not sent either."""
        answers: dict[int, BrokerAnswer] = {}
        pending: list[tuple[int, asyncio.Future[RecordMetadata]]] = []
        unsent: set[bytes | None] = set()
        for seq, topic, key, value, headers, _ in rows:
            if key in unsent:
                continue
            try:
                # Published in the trace of the transaction that wrote the row.
                with tracing.continuing(decode_headers(headers)) as sent_headers:
                    future = await producer.send(topic, value=value, key=key, headers=sent_headers)
            except KafkaError as exc:
                if refused_for_good(exc):
                    answers[seq] = Refused(describe_error(exc))
                    continue
                log.warning("relay %s: send to %s failed: %s", self.service, topic, exc)
                unsent.add(key)
                continue
            pending.append((seq, future))
        for seq, future in pending:
            try:
                await future
                answers[seq] = ACKNOWLEDGED
            except KafkaError as exc:
                if refused_for_good(exc):
                    answers[seq] = Refused(describe_error(exc))
                else:
                    log.warning("relay %s: message %s not acknowledged: %s", self.service, seq, exc)
        return answers
