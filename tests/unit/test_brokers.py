"""Client settings per broker kind: what a stock Kafka accepts, and what only the embedded
broker needs."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.brokers import KafkaBroker, broker_for

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
