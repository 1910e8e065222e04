"""The consumer loop: a batch of records, one transaction, then the offset commit.

Per batch: decode every record (what does not decode goes to a dead-letter topic with the reason),
claim the new message ids in the inbox, let the handler apply each message and write its replies
to the outbox, commit the transaction, then commit the offsets. A duplicate does nothing new. If
the batch transaction fails for a reason other than the database connection, each record is
retried alone, and a record that still fails is dead-lettered (unless the handler keeps it,
`KeepsFailed`: the orchestrator parks it with its saga): a partition never blocks forever.
How a dead letter is written and named is in `sagaline.delivery.dead_letter`; the bounds that
replace a client which waits too long (a join, a rebalance, a commit, a wedged await) are in
`sagaline.kafka.watchdog`; what differs between brokers (client settings, the embedded broker's
quirks) is in `sagaline.kafka.brokers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery import inbox
from sagaline.delivery.dead_letter import (
    DLT_REASON,
    Poison,
    dead_letter,
    describe,
    record_identity,
)
from sagaline.delivery.errors import Unprocessable, is_transient
from sagaline.domain.envelope import Envelope, header_value
from sagaline.kafka.brokers import BrokerKind, broker_for
from sagaline.kafka.clients import ensure_topics, make_consumer, stop
from sagaline.kafka.security import PLAINTEXT, KafkaSecurity
from sagaline.kafka.watchdog import (
    WEDGED_S,
    CancelledInside,
    OffsetCommits,
    Wedged,
    fetch,
    start_joined,
    watch,
)
from sagaline.storage.db import Database, after_commit
from sagaline.telemetry import tracing
from sagaline.telemetry.consumer_lag import ConsumerLag
from sagaline.telemetry.metrics import (
    BATCH_SECONDS,
    DEAD_LETTERS,
    FORGED_DEAD_LETTERS,
    MESSAGES,
    DeadLetterReason,
)

log = logging.getLogger(__name__)
COMMIT_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Incoming:
    """A consumed record: a valid envelope, or a dead letter forwarded by another service."""

    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope | None

    @property
    def topic(self) -> str:
        return str(self.record.topic)

    @property
    def dead_letter_reason(self) -> str | None:
        return header_value(self.record.headers, DLT_REASON)

    @functools.cached_property
    def identity(self) -> uuid.UUID:
        """The inbox id: the envelope's, or the dead letter's (see `record_identity`)."""
        return self.envelope.id if self.envelope is not None else record_identity(self.record)


class Handler(Protocol):
    """What a service plugs into the loop."""

    name: str
    topics: list[str]

    def dead_letter_topic(self, source_topic: str) -> str: ...

    def reads_dead_letters(self, topic: str) -> bool:
        """Whether records forwarded to `topic` as dead letters are this handler's input."""
        ...

    def check(self, topic: str, envelope: Envelope) -> None:
        """Raise Unprocessable if the envelope has no business on this topic."""
        ...

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        """Load in bulk what the batch will touch (an optimisation; may do nothing)."""
        ...

    async def handle(self, session: AsyncSession, message: Incoming) -> None: ...


@runtime_checkable
class KeepsFailed(Protocol):
    """A handler that keeps a message its handling failed on (the orchestrator parks it with its
    saga) instead of having it dead-lettered."""

    async def keep_failed(self, session: AsyncSession, message: Incoming, exc: Exception) -> bool:
        """Keep `message` in this transaction; False: dead-letter it as any other."""
        ...


class MessageLoop:
    """One service's consumer: fetch a batch, handle it in one transaction, commit the offsets."""

    def __init__(
        self,
        db: Database,
        handler: Handler,
        *,
        bootstrap_servers: str,
        group_id: str,
        batch_size: int = 200,
        max_message_bytes: int = 256 * 1024,
        broker: BrokerKind = "kafka",
        fetch_wait_ms: int | None = None,
        create_topics: Sequence[str] = (),
        partitions: int = 6,
        replicas: int = 1,
        security: KafkaSecurity = PLAINTEXT,
        wedged_s: float = WEDGED_S,
    ) -> None:
        self.db = db
        self.handler = handler
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.group_id = group_id
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.broker = broker_for(broker, handler.name, fetch_wait_ms, cheap_transactions=db.sqlite)
        self.create_topics = list(create_topics)
        self.partitions = partitions
        self.replicas = replicas
        self.wedged_s = wedged_s
        self.kafka_ok = False
        self.assigned = 0  # partitions held by this member of the consumer group
        self._commits = OffsetCommits(handler.name)  # bounded, see sagaline.kafka.watchdog
        self._stopping = asyncio.Event()
        self._beat = time.monotonic()  # when the loop last showed it was not blocked

    def stop(self) -> None:
        self._stopping.set()

    @property
    def idle_s(self) -> float:
        """Seconds since the loop last moved on (a fetch, a batch, a retry)."""
        return time.monotonic() - self._beat

    def _alive(self) -> None:
        self._beat = time.monotonic()

    async def run(self) -> None:
        while not self._stopping.is_set():
            self._alive()
            consuming = asyncio.create_task(self._consume())
            try:
                await watch(consuming, idle_s=lambda: self.idle_s, wedged_s=self.wedged_s)
            except Wedged as exc:
                self.kafka_ok, self.assigned = False, 0
                log.warning("%s: %s; starting a new client", self.handler.name, exc)
            except (KafkaError, OSError) as exc:
                self.kafka_ok, self.assigned = False, 0
                log.warning("%s: broker unavailable (%s); reconnecting", self.handler.name, exc)
                await self._pause(1.0)
            except CancelledInside as exc:
                self.kafka_ok, self.assigned = False, 0
                log.warning("%s: %s; starting a new client", self.handler.name, exc)
                await self._pause(1.0)
            except Exception:  # e.g. aiokafka's RuntimeError on a closed transport
                self.kafka_ok, self.assigned = False, 0
                log.exception("%s: Kafka client failed; starting a new one", self.handler.name)
                await self._pause(1.0)

    async def _pause(self, seconds: float) -> None:
        self._alive()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _consume(self) -> None:
        if self.create_topics:
            await ensure_topics(
                self.bootstrap_servers,
                self.create_topics,
                partitions=self.partitions,
                replicas=self.replicas,
                security=self.security,
            )
        subscribed = list(self.handler.topics)
        consumer = make_consumer(
            self.bootstrap_servers,
            self.group_id,
            subscribed,
            security=self.security,
            **self.broker.consumer_options(),
        )
        await start_joined(consumer, self.security, self.bootstrap_servers, self.handler.name)
        loop = asyncio.get_running_loop()
        self.broker.client_started(loop.time())
        handled: dict[TopicPartition, int] = {}
        next_commit = 0.0
        lag = ConsumerLag(self.handler.name)
        try:
            while not self._stopping.is_set():
                if self.handler.topics != subscribed:
                    break  # the handler reads more topics now: a new client subscribes to them
                self._alive()
                batches = await fetch(consumer, self.batch_size)
                if batches is not None:
                    self.kafka_ok = True
                self.assigned = 0 if batches is None else len(consumer.assignment())
                if not await self.broker.healthy(consumer, self.assigned, loop.time()):
                    break  # handled offsets are not committed: their records come again
                if batches is None:
                    continue
                records = [record for part in batches.values() for record in part]
                started = loop.time()
                if records and not await self.process(records):
                    break  # stopping: the batch was not handled and will be redelivered
                self.broker.batch_handled(consumer, len(records), loop.time() - started)
                handled.update((tp, part[-1].offset + 1) for tp, part in batches.items() if part)
                await lag.update(consumer)
                # Offsets follow the transactions, at most every COMMIT_INTERVAL_S: a message
                # redelivered after a crash or a rebalance is a duplicate the inbox recognises.
                if handled and (not records or loop.time() >= next_commit):
                    committed = await self._commits.commit(consumer, handled)
                    handled = {}
                    if not committed:
                        break  # uncommitted records are read again by the new client
                    next_commit = loop.time() + COMMIT_INTERVAL_S
            if handled:
                await self._commits.commit(consumer, handled)
        finally:
            lag.clear()
            await stop(consumer, self.handler.name)

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> bool:
        """Handle records durably; False only if asked to stop before they were."""
        messages, poison = self._decode(records)
        started = time.perf_counter()
        delay = 0.1
        while not self._stopping.is_set():
            try:
                await self._transaction(messages, poison)
                BATCH_SECONDS.labels(self.handler.name).observe(time.perf_counter() - started)
                return True
            except Exception as exc:
                if is_transient(exc):
                    log.warning("%s: database unavailable (%s); retrying", self.handler.name, exc)
                    await self._pause(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if len(records) == 1:
                    return await self._dead_letter_alone(records[0], exc)
                log.warning("%s: batch failed (%s); handling one by one", self.handler.name, exc)
                for record in records:
                    if not await self.process([record]):
                        return False
                return True
        return False

    def _decode(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[Incoming], list[Poison]]:
        messages: list[Incoming] = []
        poison: list[Poison] = []
        for record in records:
            if header_value(record.headers, DLT_REASON) is not None:
                if self.handler.reads_dead_letters(record.topic):
                    messages.append(Incoming(record, None))
                else:
                    # Only the dead-letter path sets this header, and never on this topic: a
                    # foreign client forged it. Poison, logged and counted like any other.
                    FORGED_DEAD_LETTERS.labels(self.handler.name, record.topic).inc()
                    why = f"forged {DLT_REASON} header on {record.topic}"
                    poison.append((record, why, DeadLetterReason.FORGED_HEADER))
                continue
            size = len(record.value or b"")
            if size > self.max_message_bytes:
                why = f"message of {size} bytes over the limit of {self.max_message_bytes} bytes"
                poison.append((record, why, DeadLetterReason.TOO_LARGE))
                continue
            try:
                envelope = Envelope.decode(record.value)
            except ValueError as exc:
                poison.append((record, describe(exc), DeadLetterReason.INVALID_ENVELOPE))
                continue
            if record.key != envelope.key:  # a null key too: the key is the saga id
                key = "null" if record.key is None else repr(record.key[:64])
                why = f"key {key} does not match saga_id {envelope.saga_id}"
                poison.append((record, why, DeadLetterReason.KEY_MISMATCH))
                continue
            try:
                self.handler.check(record.topic, envelope)
            except (ValueError, Unprocessable) as exc:
                poison.append((record, describe(exc), DeadLetterReason.UNEXPECTED_MESSAGE))
                continue
            messages.append(Incoming(record, envelope))
        return messages, poison

    async def _transaction(self, messages: list[Incoming], poison: list[Poison]) -> None:
        records = [message.record for message in messages] + [letter[0] for letter in poison]
        with tracing.under(records):
            await self._transaction_of(messages, poison)

    async def _transaction_of(self, messages: list[Incoming], poison: list[Poison]) -> None:
        async with self.db.transaction() as session:
            unread = [(letter, record_identity(letter[0])) for letter in poison]
            claims = [(m.identity, m.topic) for m in messages]
            claims += [(identity, letter[0].topic) for letter, identity in unread]
            fresh = await inbox.claim(session, claims)
            todo: list[Incoming] = []
            for message in messages:
                if message.identity in fresh:
                    fresh.discard(message.identity)  # a second copy inside the batch is a dup
                    todo.append(message)
                else:
                    MESSAGES.labels(self.handler.name, message.topic, "duplicate").inc()
            # A record dead-lettered before (read again: a rebalance, a crash before the offset
            # commit) is not dead-lettered twice.
            dead = [letter for letter, identity in unread if identity in fresh]
            with session.no_autoflush:
                await self.handler.prepare(session, todo)
                for message in todo:
                    try:
                        with tracing.processing(message.record):
                            await self.handler.handle(session, message)
                        MESSAGES.labels(self.handler.name, message.topic, "handled").inc()
                    except Unprocessable as exc:
                        dead.append((message.record, exc.reason, DeadLetterReason.UNPROCESSABLE))
            for record, reason, category in dead:
                self._dead_letter(session, record, reason, category)

    def _dead_letter(
        self,
        session: AsyncSession,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
        category: DeadLetterReason,
    ) -> None:
        log.warning(
            "%s: dead-lettering %s[%s]@%s: %s",
            self.handler.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        topic = self.handler.dead_letter_topic(record.topic)
        dead_letter(session, topic, record, reason, max_bytes=self.max_message_bytes)
        MESSAGES.labels(self.handler.name, record.topic, "dead_lettered").inc()
        after_commit(session, DEAD_LETTERS.labels(self.handler.name, category).inc)

    async def _dead_letter_alone(
        self, record: ConsumerRecord[bytes, bytes], exc: Exception
    ) -> bool:
        """Dead-letter a record its handler cannot take, once; False if stopping first (the
        record is then neither handled nor dead-lettered, and its offset must not be committed).
        """
        reason = f"handler failed: {describe(exc)}"
        log.exception("%s: %s", self.handler.name, reason, exc_info=exc)
        delay = 0.1
        while not self._stopping.is_set():
            try:
                async with self.db.transaction() as session:
                    message = self._message_of(record)
                    identity = message.identity if message else record_identity(record)
                    if await inbox.claim(session, [(identity, record.topic)]) and not (
                        message is not None
                        and isinstance(self.handler, KeepsFailed)
                        and await self.handler.keep_failed(session, message, exc)
                    ):
                        self._dead_letter(session, record, reason, DeadLetterReason.HANDLER_FAILED)
                return True
            except Exception as retry_exc:
                if not is_transient(retry_exc):
                    raise
                await self._pause(delay)
                delay = min(delay * 2, 5.0)
        return False

    def _message_of(self, record: ConsumerRecord[bytes, bytes]) -> Incoming | None:
        messages, _ = self._decode([record])
        return messages[0] if messages else None
