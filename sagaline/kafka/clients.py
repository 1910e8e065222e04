"""Kafka clients (aiokafka) configured the same way by every process.

`acks=all` producers, idempotent where the broker supports it (Apache Kafka; the embedded
broker refuses InitProducerId): the delivery rules do not need it (the inbox dedups, re-sends
cover loss), but it keeps a retried batch from being written twice or out of order.
Every client carries the process's security settings (TLS, SASL) and is started with `start`,
which turns a refused login into a `KafkaAuthError` that says who was refused.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2

from sagaline.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def key_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Any) -> int:
    """The default partitioner (the Java client's murmur2, so every client agrees on a key's
    partition), with each key's hash remembered: a saga's messages share one key, and hashing
    in pure Python was a fifth of the relay's CPU."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


class KafkaAuthError(KafkaError):
    """The broker refused this process's credentials (a KafkaError: loops retry it)."""


class _Startable(Protocol):
    async def start(self) -> None: ...


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


STOP_TIMEOUT_S = 10.0


def cancelling() -> bool:
    """Whether the current task has been asked to cancel (as opposed to having caught the
    CancelledError of another task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop(client: _Stoppable, name: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop a client within `timeout_s`: one that lost its broker may never answer.

    aiokafka's `stop` cancels its own tasks and awaits them, and the CancelledError of one it
    cancelled can escape (seen after an Apache Kafka restart, where it silently ended a
    consumer loop for good): unless this task is being cancelled itself (a shutdown), that is a
    client failing to stop cleanly, and the caller goes on to a new one.
    """
    try:
        await asyncio.wait_for(client.stop(), timeout=timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.info("%s: Kafka client not stopped cleanly (%r)", name, exc)
    except asyncio.CancelledError:
        if cancelling():
            raise
        log.info("%s: Kafka client not stopped cleanly (cancelled inside)", name)


async def start(client: _Startable, security: KafkaSecurity, bootstrap_servers: str) -> None:
    """Start a client; a failed SASL exchange becomes one clear error.

    aiokafka's SCRAM client raises a bare KeyError('v') when the broker's final message carries
    an error (`e=...`) instead of its signature: that is a refused login, not a bug to retry
    silently.
    """
    try:
        await client.start()
    except SaslAuthenticationFailed as exc:
        raise KafkaAuthError(_refused(security, bootstrap_servers, str(exc))) from exc
    except (KeyError, ValueError) as exc:
        if not security.sasl:
            raise
        raise KafkaAuthError(_refused(security, bootstrap_servers, UNCONFIRMED)) from exc
    except KafkaConnectionError as exc:
        # aiokafka's bootstrap logs a refused login (SASL_AUTHENTICATION_FAILED, as a real Kafka
        # answers) and raises "Unable to bootstrap": log in once more to tell the two apart.
        reason = await _login_refusal(security, bootstrap_servers) if security.sasl else None
        if reason is None:
            raise
        raise KafkaAuthError(_refused(security, bootstrap_servers, reason)) from exc


UNCONFIRMED = "the broker did not confirm the credentials (unknown user or wrong password)"


async def _login_refusal(security: KafkaSecurity, bootstrap_servers: str) -> str | None:
    """Why the first broker that answers refuses these credentials; None if none refuses."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connection = await create_conn(host, int(port), **security.client_options())
        except SaslAuthenticationFailed as exc:
            return str(exc)
        except (KeyError, ValueError):
            return UNCONFIRMED
        except (KafkaError, OSError, TimeoutError):
            continue
        connection.close()
        return None
    return None


def _refused(security: KafkaSecurity, bootstrap_servers: str, reason: str) -> str:
    return f"Kafka login refused at {bootstrap_servers} ({security.describe()}): {reason}"


def make_producer(
    bootstrap_servers: str, security: KafkaSecurity = PLAINTEXT, **broker_options: Any
) -> AIOKafkaProducer:
    """`broker_options`: what the broker kind adds (sagaline.kafka.brokers)."""
    options: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 0,
        "max_batch_size": 64 * 1024,
        "request_timeout_ms": 15_000,
        "retry_backoff_ms": 100,
        "partitioner": key_partitioner,
    }
    options.update(broker_options)
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, **security.client_options(), **options
    )


def make_consumer(
    bootstrap_servers: str,
    group_id: str,
    topics: Iterable[str],
    *,
    security: KafkaSecurity = PLAINTEXT,
    **broker_options: Any,
) -> AIOKafkaConsumer:
    """Offsets committed by the loop, after its transaction. Session and heartbeat are the
    client's defaults (10 s, 3 s) unless `broker_options` (sagaline.kafka.brokers) say
    otherwise: a broker on its default configuration refuses a session under 6 s."""
    options: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "retry_backoff_ms": 100,
    }
    options.update(broker_options)
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        **security.client_options(),
        group_id=group_id,
        **options,
    )


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int,
    replicas: int,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics that are missing; return the ones created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, **security.client_options()
    )
    await start(admin, security, bootstrap_servers)
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
