"""Client settings per broker kind: what a stock Kafka accepts, and what only the embedded
broker needs."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher as fetcher_module

from services.common.brokers import (
    BUSY_BATCH,
    EMBEDDED_BUSY_FETCH_WAIT_MS,
    EMBEDDED_FETCH_WAIT_MS,
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


class WithFetcher:
    def __init__(self) -> None:
        self._fetcher = Fetcher()


def test_the_embedded_fetch_waits_longer_while_batches_come_full() -> None:
    broker = broker_for("embedded", "payment")
    consumer = WithFetcher()
    broker.fetched(consumer, records=BUSY_BATCH)
    assert consumer._fetcher._fetch_max_wait_ms == EMBEDDED_BUSY_FETCH_WAIT_MS
    broker.fetched(consumer, records=1)  # a lone saga's hop: back to the short wait
    assert consumer._fetcher._fetch_max_wait_ms == EMBEDDED_FETCH_WAIT_MS
    broker.fetched(consumer, records=0)
    assert consumer._fetcher._fetch_max_wait_ms == EMBEDDED_FETCH_WAIT_MS


def test_a_fetch_wait_given_is_kept_under_load() -> None:
    broker = broker_for("embedded", "payment", fetch_wait_ms=33)
    consumer = WithFetcher()
    broker.fetched(consumer, records=500)
    assert consumer._fetcher._fetch_max_wait_ms == 33


def test_kafka_fetches_keep_their_long_poll() -> None:
    consumer = WithFetcher()
    broker_for("kafka", "payment").fetched(consumer, records=500)
    assert consumer._fetcher._fetch_max_wait_ms == 0, "untouched"


def test_aiokafka_still_reads_the_fetch_wait_from_its_fetcher() -> None:
    """`set_fetch_wait` writes a private attribute: this fails if aiokafka renames it."""
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "self._fetcher = Fetcher(" in start
    fetcher_source = inspect.getsource(fetcher_module.Fetcher)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in fetcher_source
    assert "self._fetch_max_wait_ms," in inspect.getsource(
        fetcher_module.Fetcher._get_actions_per_node
    )
