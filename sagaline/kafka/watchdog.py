"""Bounds on a consumer client's waits, and when to give up on a client for a new one.

aiokafka can wait without limit: for a group join at start, for a rebalance that never completes
(its coordinator lost with the broker), for an offset commit to a coordinator it no longer reaches,
or on an await that never returns (seen after a broker restart). The consumer loop
(`sagaline.delivery.consumer`) keeps its client behind these bounds: each one exceeded ends the
client, and the loop starts a new one. Nothing is lost: uncommitted offsets are read again and the
inbox drops what was already handled.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord, TopicPartition

from sagaline.kafka.clients import STOP_TIMEOUT_S, start, stop
from sagaline.kafka.security import KafkaSecurity

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 10
COMMIT_TIMEOUTS_TO_REPLACE = 2  # commits timing out this many times in a row: a new client
START_TIMEOUT_S = 20.0  # aiokafka's start() waits, unbounded, for the group join to complete
REBALANCE_WAIT_S = 2.0  # a fetch that waits longer is waiting for a rebalance to complete
WEDGED_S = 60.0  # the loop blocked this long on one await: the client is abandoned for a new one
WATCH_INTERVAL_S = 1.0

Batches = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class Wedged(Exception):
    """The consumer loop stayed blocked on one await for WEDGED_S."""


class CancelledInside(Exception):
    """The loop's work ended cancelled while nobody cancelled the loop: a CancelledError from
    inside the client library. Were it let through, the loop would end silently, for good."""


async def watch(work: asyncio.Task[None], *, idle_s: Callable[[], float], wedged_s: float) -> None:
    """Wait for `work`, cancelling it if the loop stays blocked (`idle_s()`) for `wedged_s`.

    Every await in the loop is meant to be bounded, but a client library can wait forever
    (seen after a broker restart): this is the backstop, and its log line says where.
    Cancelling loses nothing: a cancelled transaction rolls back, uncommitted offsets are
    read again and the inbox drops what was already handled.
    """
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=WATCH_INTERVAL_S)
            if done:
                if work.cancelled():  # not by this loop: a client's own task cancelled it
                    raise CancelledInside("the Kafka client's work was cancelled inside it")
                return work.result()
            if idle_s() >= wedged_s:
                break
    except asyncio.CancelledError:
        work.cancel()  # the service is shutting down: the loop goes with it
        raise
    where = awaiting_at(work.get_coro())
    idle = idle_s()
    work.cancel()
    await asyncio.wait({work}, timeout=STOP_TIMEOUT_S)  # its clean-up is bounded too
    raise Wedged(f"the loop made no progress for {idle:.0f}s, blocked at:\n{where}")


def awaiting_at(awaitable: object) -> str:
    """Where a suspended coroutine is waiting, outermost first: the chain of `cr_await`s."""
    frames = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            break
        frames.append(
            traceback.FrameSummary(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        )
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return "".join(traceback.format_list(frames)) or "(unknown)"


async def start_joined(
    consumer: AIOKafkaConsumer, security: KafkaSecurity, bootstrap_servers: str, name: str
) -> None:
    """Start the client, within START_TIMEOUT_S for its group join; stopped if it fails."""
    try:
        await asyncio.wait_for(
            start(consumer, security, bootstrap_servers), timeout=START_TIMEOUT_S
        )
    except TimeoutError:
        await stop(consumer, name)
        raise KafkaTimeoutError(f"no group join within {START_TIMEOUT_S:.0f}s") from None
    except BaseException:
        await stop(consumer, name)
        raise


async def fetch(consumer: AIOKafkaConsumer, max_records: int) -> Batches | None:
    """The next records by partition; None while a rebalance keeps the member waiting.

    aiokafka's `getmany` waits, without limit and whatever its timeout, for a rebalance in
    progress to complete; one that never completes (its coordinator lost with the broker)
    would block the loop for good. Bounded, the member counts as holding no partitions
    meanwhile (on the embedded broker it joins again after its join patience).
    """
    try:
        batches: Batches = await asyncio.wait_for(
            consumer.getmany(timeout_ms=200, max_records=max_records),
            timeout=REBALANCE_WAIT_S,
        )
    except TimeoutError:
        return None
    return batches


class OffsetCommits:
    """One consumer loop's offset commits, bounded, and the time-outs in a row (across clients)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._timeouts = 0

    async def commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
        """Commit offsets; False once commits have timed out COMMIT_TIMEOUTS_TO_REPLACE times in
        a row: the client no longer reaches its group coordinator (seen on Apache Kafka after a
        restart: the member expired and the client never joined again), and a new one will."""
        try:
            await asyncio.wait_for(consumer.commit(offsets), timeout=COMMIT_TIMEOUT_S)
        except CommitFailedError as exc:
            # A rebalance took the partition: its new owner re-reads, the inbox dedups.
            log.info("%s: offset commit not done (%r)", self.name, exc)
        except TimeoutError:
            self._timeouts += 1
            log.warning("%s: offset commit timed out (%d in a row)", self.name, self._timeouts)
            if self._timeouts >= COMMIT_TIMEOUTS_TO_REPLACE:
                self._timeouts = 0
                return False
            return True
        self._timeouts = 0
        return True
