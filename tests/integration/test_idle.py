"""An idle stack stays still: after its poison was dead-lettered, a minute of nothing moves no
committed offset, adds no dead letter and no event to a saga's history.

The embedded broker lists a partition's end as its last batch's first offset + 1; a consumer
that trusted it took every idle partition for a re-created one and read it all again, every
~18 s, dead-lettering its poison each time. This test watches for a minute (no sleep hides a
race: it polls, and fails at the first thing that moves).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from sagaline.domain.definition import load_definition
from sagaline.domain.envelope import Envelope
from sagaline.lab.stack import Stack
from sagaline.services.registry import SERVICES
from tests.integration.support import (
    BROKERS,
    Api,
    Kafka,
    Parts,
    eventually,
    partitions_of,
    running_stack,
)

QUIET_S = 60.0


@pytest.fixture(scope="module", params=BROKERS)
def idle_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("idle"), Parts(request.param, "sqlite")) as stack:
        yield stack


async def test_an_idle_stack_with_poison_moves_nothing_for_a_minute(
    idle_stack: Stack, client: httpx.AsyncClient
) -> None:
    stack, api = idle_stack, Api(idle_stack, client)
    customer, product = await api.account("100.00"), await api.product(10)
    orders = [await api.order(customer, (product, 1, "1.00")) for _ in range(3)]
    for order in orders:
        assert (await api.decided(order["id"]))["status"] == "APPROVED"
    # Poison in batches of several records (an idle partition then lists its end behind the
    # consumer), keyed by a finished saga: its dead letter reaches the orchestrator too.
    finished = orders[0]["id"]
    async with Kafka(stack.bootstrap_servers) as kafka:
        for _ in range(5):
            await kafka.send("stock", b"not json", str(finished).encode())
            bad = Envelope(type="stock.reserve", saga_id=uuid.UUID(finished), saga="order")
            await kafka.send("stock", bad.encode(), bad.key, bad.headers())  # no payload
            await kafka.send("payment", b"\x00\x01", str(uuid.uuid4()).encode())
        await kafka.read("stock.dlt", lambda r: True, count=10, within=60)
        await kafka.read("payment.dlt", lambda r: True, count=5, within=60)

    definition = load_definition(stack.config.saga_file)
    groups = [f"sagaline-{definition.name}-{service}" for service in SERVICES]
    topics = definition.topics()
    dead_letter_topics = [t for t in topics if t.endswith(".dlt")]

    async def snapshot() -> dict[str, Any]:
        return {
            "committed": await committed_offsets(stack.bootstrap_servers, groups, topics),
            "dead letters": await record_counts(stack.bootstrap_servers, dead_letter_topics),
            "histories": [len((await api.saga(order["id"]))["history"]) for order in orders],
        }

    async def settled() -> dict[str, Any] | None:
        first = await snapshot()
        await asyncio.sleep(3)  # offsets are committed every 0.2 s; 3 s unchanged is settled
        return first if first == await snapshot() else None

    before = await eventually(settled, within=60, what="the stack to settle")
    assert before["histories"][0] > before["histories"][1], "the dead letter reached the saga"

    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        await asyncio.sleep(5)
        assert await snapshot() == before, (
            f"moved after {QUIET_S - deadline + time.monotonic():.0f}s"
        )
    rereads = [name for name in SERVICES if "reading it from the start" in log_text(stack, name)]
    assert rereads == [], f"re-read a partition from the start: {rereads}"


def log_text(stack: Stack, process: str) -> str:
    return (stack.logs / f"{process}.log").read_text(errors="replace")


async def committed_offsets(servers: str, groups: list[str], topics: list[str]) -> dict[str, Any]:
    """Each group's committed offsets on every partition of `topics` (None where it has none)."""
    offsets: dict[str, Any] = {}
    for group in groups:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group)
        await consumer.start()  # no subscription: it does not join the group, it only asks
        try:
            partitions = [tp for topic in topics for tp in await partitions_of(consumer, topic)]
            for partition in partitions:
                offsets[
                    f"{group} {partition.topic}[{partition.partition}]"
                ] = await asyncio.wait_for(consumer.committed(partition), timeout=10)
        finally:
            await consumer.stop()
    return offsets


async def record_counts(servers: str, topics: list[str]) -> dict[str, int]:
    """Records in each topic, read from the start (the embedded broker's listed ends lag)."""
    return {topic: await record_count(servers, topic) for topic in topics}


async def record_count(servers: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count, empty = 0, 0
        while empty < 2:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=300), timeout=10)
            read = sum(len(records) for records in batch.values())
            count, empty = count + read, 0 if read else empty + 1
        return count
    finally:
        await consumer.stop()
