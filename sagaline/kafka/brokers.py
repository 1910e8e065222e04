"""What differs between brokers, kept out of the consumer loop: client settings and quirks.

Apache Kafka (and Strimzi, Redpanda) needs nothing beyond the protocol: its fetches long-poll,
its producers can be idempotent, a restart keeps topics, logs and committed offsets, and it
answers a fetch past a partition's end with OFFSET_OUT_OF_RANGE. Its consumer settings are the
client's defaults, which a broker on its default configuration accepts
(`group.min.session.timeout.ms` is 6 s there: a 3 s session is refused). On both brokers a member
that holds no partitions for its join patience is replaced by a new client (on Apache Kafka a
backstop: nothing there has been seen to need it).

The embedded broker (Tansu, in memory) has quirks the loop must survive, each seen here:
- a restart loses topics and committed offsets, and a consumer's position can be left past the
  end of a re-created partition, or the client can stop fetching;
- ListOffsets(latest) answers the last batch's first offset + 1, not the log end, so the listed
  end of an idle partition is usually behind a consumer that has read everything;
- a group join can fail to complete after a restart, leaving a member with no partitions.
Its fetches do not long-poll: a fetch that finds nothing looks again only after half its wait,
so a short wait keeps a hop fast while the stream is quiet. It refuses idempotent producers.
A short session lets a restarted process take its partitions back fast.

On both, a consumer's fetch follows the load (`KafkaBroker.batch_handled`): quiet, it is
answered at the first record; busy, it waits a little for more (as long as four times what the
last batch took to handle), so each transaction takes a larger batch. On PostgreSQL, where a
transaction pays a round trip per statement, a busy fetch is answered early only once 16 KiB are
there; on SQLite, whose transactions are cheap, at whatever the broker finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

BrokerKind = Literal["kafka", "embedded"]

KAFKA_FETCH_WAIT_MS = 500  # a long poll: the broker answers as soon as a record arrives
EMBEDDED_FETCH_WAIT_MS = 20  # no long poll: a lone saga's hop waits ~5 ms for its record
BUSY_FETCH_WAIT_MS = 60  # busy: a fetch waits up to this long for more records...
BUSY_FETCH_MIN_WAIT_MS = 5  # ...and at least this long...
BUSY_WAIT_PER_HANDLING = 4  # ...in between, 4x what the last batch took to handle
BUSY_FETCH_MIN_BYTES = 16 * 1024  # ...on PostgreSQL, until this much (~20 messages) is there
KAFKA_BUSY_BATCH = 8  # records in one fetch from which the stream counts as busy...
EMBEDDED_BUSY_BATCH = 3  # ...lower on the embedded broker, which looks only every half-wait
POSITION_CHECK_S = 2.0  # how often positions are compared with the partitions' ends
STALL_S = 15.0  # records waiting this long behind a position that does not move: a stuck client
JOIN_PATIENCE_S = 20  # a member with no partitions this long joins again (then 2x longer)
JOIN_PATIENCE_MAX_S = 320


class Verdict(enum.Enum):
    FINE = "fine"
    RE_CREATED = "re-created"  # the position is past the partition's end: read it from the start
    STALLED = "stalled"  # records wait behind a position that does not move: a new client


@dataclass(frozen=True)
class FetchShape:
    """What a consumer's fetch asks of the broker: at most how long to wait, for how much."""

    wait_ms: int
    min_bytes: int = 1


@dataclass
class PositionCheck:
    """What the embedded broker's position check remembers between checks, and concludes.

    A position past the end means the topic was deleted and created again (the broker
    restarted): Kafka answers such a fetch with OFFSET_OUT_OF_RANGE and the consumer resets,
    but a broker that answers with nothing would leave the partition unread until the new log
    grew past the old offset. The end our own fetches saw says so fastest (two checks agreeing).
    The listed end (ListOffsets) cannot say so alone: the embedded broker lists the last batch's
    first offset + 1, behind every idle consumer. A still position past it is believed only
    when the broker has also lost the group's committed offset for the partition (below the
    position, or none), which a restart of the in-memory broker does and an idle partition
    never does: there, what was handled is committed. A position that stays behind the listed
    end for STALL_S means the client stopped fetching (seen after a broker restart), and so
    does a position that stays unknown (being reset) for STALL_S.
    """

    answered_at: float  # when the broker last told the partitions' ends
    positions: dict[TopicPartition, tuple[int | None, float]] = field(default_factory=dict)
    short: dict[TopicPartition, int] = field(default_factory=dict)  # past the fetched end, once

    def judge(
        self,
        partition: TopicPartition,
        position: int | None,
        listed_end: int,
        fetched_end: int | None,
        committed: int | None,
        now: float,
    ) -> Verdict:
        if position is not None and fetched_end is not None and position > fetched_end:
            if self.short.get(partition) == position:
                return self._forget(partition, Verdict.RE_CREATED)
            self.short[partition] = position  # believed when the next check agrees
        else:
            self.short.pop(partition, None)
        last_position, since = self.positions.setdefault(partition, (position, now))
        if position != last_position or position == listed_end:
            self.positions[partition] = (position, now)
            return Verdict.FINE
        if now - since < STALL_S:
            return Verdict.FINE
        if position is not None and position > listed_end:
            if committed is not None and committed >= position:
                self.positions[partition] = (position, now)  # idle, all committed: ask later
                return Verdict.FINE
            return self._forget(partition, Verdict.RE_CREATED)
        return self._forget(partition, Verdict.STALLED)

    def wants_committed(
        self, partition: TopicPartition, position: int | None, listed_end: int, now: float
    ) -> bool:
        """Whether `judge` will need the committed offset (asked of the broker only then)."""
        if position is None or position <= listed_end:
            return False
        last_position, since = self.positions.get(partition, (position, now))
        return position == last_position and now - since >= STALL_S

    def _forget(self, partition: TopicPartition, verdict: Verdict) -> Verdict:
        self.short.pop(partition, None)
        self.positions.pop(partition, None)
        return verdict


class KafkaBroker:
    """Apache Kafka: the client's defaults, a long-polling fetch, an idempotent producer."""

    kind: BrokerKind = "kafka"

    quiet_wait_ms = KAFKA_FETCH_WAIT_MS
    sqlite_busy_batch = KAFKA_BUSY_BATCH  # where a busy fetch returns what it finds

    def __init__(
        self,
        name: str = "consumer",
        fetch_wait_ms: int | None = None,
        *,
        cheap_transactions: bool = False,
    ) -> None:
        self.name = name
        self.quiet = FetchShape(fetch_wait_ms or self.quiet_wait_ms)
        self.adapts = fetch_wait_ms is None  # a wait given in the settings is kept as given
        # Waiting for a batch's worth of bytes pays where a transaction costs round trips
        # (PostgreSQL); on SQLite it only adds latency, which at 16 in flight is the throughput.
        self.busy_min_bytes = 1 if cheap_transactions else BUSY_FETCH_MIN_BYTES
        self.busy_batch = self.sqlite_busy_batch if cheap_transactions else KAFKA_BUSY_BATCH
        self._join_patience = JOIN_PATIENCE_S
        self._join_deadline = 0.0

    def consumer_options(self) -> dict[str, Any]:
        return {"fetch_max_wait_ms": self.quiet.wait_ms, "fetch_min_bytes": self.quiet.min_bytes}

    def batch_handled(self, consumer: AIOKafkaConsumer, records: int, took_s: float) -> None:
        """Called after each batch with its size and how long it took: shapes the next fetches.

        Quiet (a lone saga's hop), a fetch is answered at its first record: latency is all that
        counts. Busy, it waits a little for more: every process's cost per saga falls with the
        batch it takes in one transaction (docs/performance-log.md has the measurements).
        """
        if not self.adapts:
            return
        if records < self.busy_batch:
            set_fetch_shape(consumer, self.quiet)
        else:
            set_fetch_shape(consumer, FetchShape(self.busy_wait_ms(took_s), self.busy_min_bytes))

    def busy_wait_ms(self, took_s: float) -> int:
        """What is worth waiting for follows what a batch costs to handle. On PostgreSQL (a
        round trip per statement) a long wait pays; on SQLite, whose transactions are cheap, a
        fixed 60 ms took a fifth of the demo's sagas/s, and on Apache Kafka it held a fetch for
        its 16 KiB at moderate loads (16 in flight: 81 sagas/s, p50 183 ms, against 120 and
        121 ms now)."""
        wait_ms = BUSY_WAIT_PER_HANDLING * took_s * 1000
        return round(min(BUSY_FETCH_WAIT_MS, max(BUSY_FETCH_MIN_WAIT_MS, wait_ms)))

    def producer_options(self) -> dict[str, Any]:
        # Retries of a batch the broker already wrote are dropped by it: no duplicate, no reorder.
        return {"enable_idempotence": True}

    def client_started(self, now: float) -> None:
        """A new consumer client joined the group."""
        self._join_deadline = now + self._join_patience

    async def healthy(self, consumer: AIOKafkaConsumer, assigned: int, now: float) -> bool:
        """Called after each fetch; False replaces the client. On Kafka only a member left
        without partitions for its join patience is replaced (a backstop)."""
        return not self._stuck_joining(assigned, now)

    def _stuck_joining(self, assigned: int, now: float) -> bool:
        """True if this member has held no partitions for its join patience: a fresh member
        (new id) joins again (seen at start and after a restart, when a join never completes).

        Each time it waits twice as long (up to JOIN_PATIENCE_MAX_S), and back to
        JOIN_PATIENCE_S once it holds partitions: a member of a group with more members than
        partitions legitimately holds none, and must not keep the group rebalancing.
        """
        if assigned:
            self._join_patience = JOIN_PATIENCE_S
            self._join_deadline = now + self._join_patience
            return False
        if now < self._join_deadline:
            return False
        log.warning("%s: no partitions for %ss; joining again", self.name, self._join_patience)
        self._join_patience = min(self._join_patience * 2, JOIN_PATIENCE_MAX_S)
        return True


class EmbeddedBroker(KafkaBroker):
    """The embedded broker's settings, and the checks that get a client past its quirks."""

    kind: BrokerKind = "embedded"

    quiet_wait_ms = EMBEDDED_FETCH_WAIT_MS
    sqlite_busy_batch = EMBEDDED_BUSY_BATCH

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._next_check = 0.0
        self._positions = PositionCheck(answered_at=0.0)

    def consumer_options(self) -> dict[str, Any]:
        return {
            **super().consumer_options(),
            "session_timeout_ms": 3_000,
            "heartbeat_interval_ms": 300,
            "metadata_max_age_ms": 5_000,
        }

    def producer_options(self) -> dict[str, Any]:
        return {}  # InitProducerId is refused: no idempotent producer

    def client_started(self, now: float) -> None:
        super().client_started(now)
        self._next_check = 0.0
        self._positions = PositionCheck(answered_at=now)

    async def healthy(self, consumer: AIOKafkaConsumer, assigned: int, now: float) -> bool:
        if not await super().healthy(consumer, assigned, now):
            return False
        if now < self._next_check:
            return True
        self._next_check = now + POSITION_CHECK_S
        return await self._check_positions(consumer, now)

    async def _check_positions(self, consumer: AIOKafkaConsumer, now: float) -> bool:
        """Judge each held partition's position (see `PositionCheck`); False if the client is
        stuck."""
        check = self._positions
        partitions = list(consumer.assignment())
        if not partitions:
            return True
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), timeout=5)
        except (KafkaError, TimeoutError):
            # The broker is away, or this client no longer gets answers (seen after a broker
            # restart, with every offset commit timing out): a new client after STALL_S.
            if now - check.answered_at < STALL_S:
                return True
            log.warning("%s: no partition ends for %.0fs; reconnecting", self.name, STALL_S)
            return False
        check.answered_at = now
        for partition in partitions:
            end = ends.get(partition)
            if end is None:
                continue
            position: int | None = None  # unknown while it is being reset after a rebalance
            with contextlib.suppress(KafkaError, TimeoutError):
                position = await asyncio.wait_for(consumer.position(partition), timeout=1)
            committed: int | None = None
            if check.wants_committed(partition, position, end, now):
                with contextlib.suppress(KafkaError, TimeoutError):
                    committed = await asyncio.wait_for(consumer.committed(partition), timeout=2)
            fetched_end = consumer.highwater(partition)
            verdict = check.judge(partition, position, end, fetched_end, committed, now)
            if verdict is Verdict.FINE:
                continue
            at = "an unknown position" if position is None else position
            where = f"{partition.topic}[{partition.partition}] at {at}"
            ends_at = f"listed end {end}, fetched end {fetched_end}, committed {committed}"
            if verdict is Verdict.STALLED:
                log.warning(
                    "%s: %s made no progress for %.0fs (%s); reconnecting",
                    self.name,
                    where,
                    STALL_S,
                    ends_at,
                )
                return False
            log.warning(
                "%s: %s is past the end (%s): the partition was re-created; reading it from the "
                "start",
                self.name,
                where,
                ends_at,
            )
            await consumer.seek_to_beginning(partition)
        return True


def set_fetch_shape(consumer: AIOKafkaConsumer, shape: FetchShape) -> None:
    """Shape the consumer's next fetches. aiokafka reads both from its fetcher for every request
    but offers no setter; `test_brokers` fails if the attributes move."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None:
        fetcher._fetch_max_wait_ms = shape.wait_ms
        fetcher._fetch_min_bytes = shape.min_bytes


def broker_for(
    kind: BrokerKind,
    name: str,
    fetch_wait_ms: int | None = None,
    *,
    cheap_transactions: bool = False,
) -> KafkaBroker:
    """The adapter of one broker kind for one consumer loop (it keeps that loop's state);
    `cheap_transactions` for a loop on SQLite."""
    adapter = EmbeddedBroker if kind == "embedded" else KafkaBroker
    return adapter(name, fetch_wait_ms, cheap_transactions=cheap_transactions)
