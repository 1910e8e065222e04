"""Client settings per broker kind: what a stock Kafka accepts, and what only the embedded
broker needs."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher as fetcher_module

from sagaline.kafka.brokers import (
    BUSY_FETCH_MIN_BYTES,
    BUSY_FETCH_MIN_WAIT_MS,
    BUSY_FETCH_WAIT_MS,
    EMBEDDED_BUSY_BATCH,
    EMBEDDED_FETCH_WAIT_MS,
    KAFKA_BUSY_BATCH,
    KAFKA_FETCH_WAIT_MS,
    KafkaBroker,
    broker_for,
)

KAFKA_MIN_SESSION_MS = 6_000  # group.min.session.timeout.ms on a broker's default configuration


class Untouchable:
    """A consumer that fails any use: the check must not need one."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the Kafka path used consumer.{name}")


def test_kafka_clients_ask_for_nothing_a_stock_broker_refuses() -> None:
    options = broker_for("kafka", "payment").consumer_options()
    assert options.get("session_timeout_ms", 10_000) >= KAFKA_MIN_SESSION_MS
    assert options["fetch_max_wait_ms"] >= 100, "a long poll, not a busy one"
    assert broker_for("kafka", "relay").producer_options() == {"enable_idempotence": True}


async def test_the_kafka_path_has_no_position_checks() -> None:
    broker = KafkaBroker("payment")
    broker.client_started(0.0)
    for now in range(0, 3_600, 2):  # an hour holding partitions without progress: nothing to do
        assert await broker.healthy(Untouchable(), assigned=3, now=float(now))


class HoldsNothing:
    def assignment(self) -> frozenset[Any]:
        return frozenset()


@pytest.mark.parametrize("kind", ["kafka", "embedded"])
async def test_a_member_without_partitions_joins_again_after_its_patience(kind: Any) -> None:
    broker = broker_for(kind, "payment")
    broker.client_started(0.0)
    assert await broker.healthy(HoldsNothing(), assigned=0, now=1.0)
    assert not await broker.healthy(HoldsNothing(), assigned=0, now=21.0)
    broker.client_started(21.0)  # the new client: twice the patience before the next join
    assert await broker.healthy(HoldsNothing(), assigned=0, now=50.0)
    assert not await broker.healthy(HoldsNothing(), assigned=0, now=62.0)


@pytest.mark.parametrize("kind", ["kafka", "embedded"])
def test_a_fetch_wait_given_wins(kind: Any) -> None:
    assert broker_for(kind, "stock", fetch_wait_ms=77).consumer_options()["fetch_max_wait_ms"] == 77


class Fetcher:
    _fetch_max_wait_ms = 0
    _fetch_min_bytes = 0


class WithFetcher:
    def __init__(self) -> None:
        self._fetcher = Fetcher()

    def shape(self) -> tuple[int, int]:
        return (self._fetcher._fetch_max_wait_ms, self._fetcher._fetch_min_bytes)


@pytest.mark.parametrize(
    ("kind", "cheap_transactions", "quiet", "busy_batch", "busy_min_bytes"),
    [
        ("kafka", False, (KAFKA_FETCH_WAIT_MS, 1), KAFKA_BUSY_BATCH, BUSY_FETCH_MIN_BYTES),
        ("embedded", False, (EMBEDDED_FETCH_WAIT_MS, 1), KAFKA_BUSY_BATCH, BUSY_FETCH_MIN_BYTES),
        ("kafka", True, (KAFKA_FETCH_WAIT_MS, 1), KAFKA_BUSY_BATCH, 1),
        ("embedded", True, (EMBEDDED_FETCH_WAIT_MS, 1), EMBEDDED_BUSY_BATCH, 1),
    ],
)
def test_a_busy_stream_waits_for_larger_batches(
    kind: Any,
    cheap_transactions: bool,
    quiet: tuple[int, int],
    busy_batch: int,
    busy_min_bytes: int,
) -> None:
    """On PostgreSQL a busy fetch waits for 16 KiB; on SQLite (cheap transactions) it returns
    what the broker finds, and on the embedded broker a stream is busy from fewer records."""
    broker = broker_for(kind, "payment", cheap_transactions=cheap_transactions)
    assert broker.busy_batch == busy_batch
    options = broker.consumer_options()
    assert (options["fetch_max_wait_ms"], options["fetch_min_bytes"]) == quiet
    consumer = WithFetcher()
    broker.batch_handled(consumer, records=broker.busy_batch, took_s=0.010)
    assert consumer.shape() == (broker.busy_wait_ms(0.010), busy_min_bytes)
    broker.batch_handled(consumer, records=1, took_s=0.010)  # a lone saga's hop: its first record
    assert consumer.shape() == quiet
    broker.batch_handled(consumer, records=broker.busy_batch - 1, took_s=0.010)
    assert consumer.shape() == quiet
    broker.batch_handled(consumer, records=broker.busy_batch + 40, took_s=2.0)
    assert consumer.shape() == (BUSY_FETCH_WAIT_MS, busy_min_bytes), "the longest wait"
    broker.batch_handled(consumer, records=0, took_s=0.0)
    assert consumer.shape() == quiet


@pytest.mark.parametrize("kind", ["kafka", "embedded"])
def test_the_busy_wait_follows_what_a_batch_costs(kind: Any) -> None:
    broker = broker_for(kind, "payment")
    assert broker.busy_wait_ms(0.004) == 16, "four times a cheap (SQLite) batch"
    assert broker.busy_wait_ms(0.0001) == BUSY_FETCH_MIN_WAIT_MS
    assert broker.busy_wait_ms(0.5) == BUSY_FETCH_WAIT_MS


@pytest.mark.parametrize("kind", ["kafka", "embedded"])
def test_a_fetch_wait_given_is_kept_under_load(kind: Any) -> None:
    broker = broker_for(kind, "payment", fetch_wait_ms=33)
    consumer = WithFetcher()
    broker.batch_handled(consumer, records=500, took_s=0.5)
    assert consumer.shape() == (0, 0), "untouched: the client keeps the wait it was given"
    assert broker.consumer_options()["fetch_max_wait_ms"] == 33


def test_aiokafka_still_reads_the_fetch_shape_from_its_fetcher() -> None:
    """`set_fetch_shape` writes private attributes: this fails if aiokafka renames them."""
    assert "self._fetcher = Fetcher(" in inspect.getsource(AIOKafkaConsumer.start)
    init = inspect.getsource(fetcher_module.Fetcher.__init__)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in init
    assert "self._fetch_min_bytes = fetch_min_bytes" in init
    request = inspect.getsource(fetcher_module.Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms," in request
    assert "self._fetch_min_bytes," in request
