"""Kafka clients (aiokafka) configured the same way by every process.

Plain `acks=all` producers only: the embedded broker refuses idempotent and transactional
producers, and the delivery rules do not need them (the inbox dedups, re-sends cover loss).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


def make_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=0,
        max_batch_size=64 * 1024,
        request_timeout_ms=15_000,
        retry_backoff_ms=100,
    )


def make_consumer(
    bootstrap_servers: str, group_id: str, topics: Iterable[str], *, fetch_wait_ms: int
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        session_timeout_ms=3_000,
        heartbeat_interval_ms=300,
        retry_backoff_ms=100,
        metadata_max_age_ms=5_000,
    )


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], *, partitions: int, replicas: int
) -> list[str]:
    """Create the topics that are missing; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        new = [NewTopic(t, num_partitions=partitions, replication_factor=replicas) for t in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            log.info("topics created concurrently by another process")
        except KafkaError as exc:
            # A per-topic "already exists" arrives as a response error on some brokers.
            if "TopicAlreadyExists" not in repr(exc):
                raise
        return missing
    finally:
        await admin.close()
