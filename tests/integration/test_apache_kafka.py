"""Apache Kafka as the project starts it: stock group settings, idempotent producer, and a log
that survives a SIGKILL (records and committed offsets)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import InvalidSessionTimeoutError

from sagaline.lab.launchers.apache_kafka import ApacheKafka, unavailable_reason

TOPIC = "ledger"
PARTITIONS = 3
GROUP = "auditors"


@pytest.fixture
def apache_kafka(tmp_path: Path) -> Iterator[ApacheKafka]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    kafka = ApacheKafka(log_path=tmp_path / "kafka.log", data_dir=tmp_path / "kafka")
    try:
        yield kafka
    finally:
        kafka.stop()


@asynccontextmanager
async def group_consumer(
    bootstrap_servers: str, group_id: str, **settings: int
) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def produce(bootstrap_servers: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        sent = [await producer.send(TOPIC, value, key=value) for value in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read(consumer: AIOKafkaConsumer, count: int, timeout_s: float = 60) -> list[bytes]:
    """Exactly `count` values (fails on fewer by the deadline), then a short look for extras."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < count and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        values += [record.value for records in batches.values() for record in records]
    assert len(values) == count, f"read {len(values)} of {count} records by the deadline"
    extra = await consumer.getmany(timeout_ms=1000)
    values += [record.value for records in extra.values() for record in records]
    return values


async def committed_total(consumer: AIOKafkaConsumer) -> int:
    offsets = [await consumer.committed(TopicPartition(TOPIC, p)) for p in range(PARTITIONS)]
    return sum(offset or 0 for offset in offsets)


async def test_apache_kafka_keeps_its_log_and_offsets_across_a_sigkill(
    apache_kafka: ApacheKafka,
) -> None:
    await asyncio.to_thread(apache_kafka.start)
    servers = apache_kafka.bootstrap_servers

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        await admin.close()

    before = [f"before-{i}".encode() for i in range(10)]
    await produce(servers, before)

    # aiokafka's default session timeout (10 s) is within the stock bounds (6 s to 30 min).
    async with group_consumer(servers, GROUP) as consumer:
        assert sorted(await read(consumer, len(before))) == sorted(before)
        await consumer.commit()
        assert await committed_total(consumer) == len(before)

    # Below the stock group.min.session.timeout.ms (6 s) the broker refuses to let it join
    # (aiokafka's start() waits for the first assignment, so that is where it fails).
    impatient = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=servers,
        group_id="impatient",
        session_timeout_ms=3000,
        heartbeat_interval_ms=1000,
    )
    try:
        with pytest.raises(InvalidSessionTimeoutError):
            await asyncio.wait_for(impatient.start(), timeout=60)
    finally:
        await impatient.stop()

    apache_kafka.kill()
    assert not apache_kafka.alive()
    await asyncio.to_thread(apache_kafka.start)
    assert apache_kafka.bootstrap_servers == servers

    after = [f"after-{i}".encode() for i in range(5)]
    await produce(servers, after)

    # The group resumes at its committed offsets: only what came after, nothing redelivered.
    async with group_consumer(servers, GROUP) as consumer:
        assert await committed_total(consumer) == len(before)
        assert sorted(await read(consumer, len(after))) == sorted(after)

    # And the log kept every record written before the SIGKILL.
    everything = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest"
    )
    await everything.start()
    try:
        assert sorted(await read(everything, len(before) + len(after))) == sorted(before + after)
    finally:
        await everything.stop()
