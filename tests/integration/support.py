"""Helpers of the integration tests: the real parts (broker and database kinds), a running stack
on each combination, HTTP calls, Kafka access."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sagaline.domain.envelope import Envelope, Headers, header_value
from sagaline.kafka.brokers import BrokerKind
from sagaline.lab.databases import create_missing, drop
from sagaline.lab.launchers import apache_kafka, postgres
from sagaline.lab.launchers.apache_kafka import ApacheKafka, resolve_jars
from sagaline.lab.launchers.embedded_broker import EmbeddedBroker
from sagaline.lab.ports import free_port
from sagaline.lab.stack import Stack, StackConfig
from sagaline.registration import find, upgrade
from sagaline.services.registry import SERVICES
from sagaline.storage.db import Database

T = TypeVar("T")
DatabaseKind = Literal["sqlite", "postgresql"]
BROKERS: tuple[BrokerKind, ...] = ("embedded", "kafka")
DATABASES: tuple[DatabaseKind, ...] = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Parts:
    """The broker and the database a test runs on (its id, e.g. `kafka-postgresql`, is in the
    test's name and in the summary's counts)."""

    broker: BrokerKind
    database: DatabaseKind

    def __str__(self) -> str:
        return f"{self.broker}-{self.database}"


# What a whole stack per module runs on: each broker and each database, Kafka with the database
# it is deployed with (Kafka on SQLite runs in the relay, idle and restart tests). All four
# would add ~5 minutes of Kafka stacks to a run that must stay under 30.
STACK_PARTS = [Parts("embedded", "sqlite"), Parts("embedded", "postgresql")]
STACK_PARTS += [Parts("kafka", "postgresql")]
EMBEDDED_SQLITE = Parts("embedded", "sqlite")  # for what does not depend on the parts


def unavailable(what: str, reason: str | None) -> None:
    """Skip a test whose real part cannot run here, with the reason; under CI=true, fail it:
    CI proves what the README and docs/ claim."""
    if reason is None:
        return
    message = f"{what} cannot run here: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_broker(kind: BrokerKind) -> None:
    if kind == "kafka":
        unavailable("Apache Kafka", apache_kafka.unavailable_reason())


def require_postgres() -> None:
    unavailable("PostgreSQL", postgres.unavailable_reason())


def make_broker(
    kind: BrokerKind, directory: Path, port: int | None = None
) -> EmbeddedBroker | ApacheKafka:
    """A broker of `kind`, not started yet, its log and data in `directory`."""
    require_broker(kind)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "kafka":
        resolve_jars()
        return ApacheKafka(port, directory / "broker.log", data_dir=directory / "kafka")
    return EmbeddedBroker(port, directory / "broker.log")


@contextlib.contextmanager
def started_broker(kind: BrokerKind, directory: Path) -> Iterator[EmbeddedBroker | ApacheKafka]:
    """A broker of `kind` of the test's own, stopped after."""
    broker = make_broker(kind, directory)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def fresh_database(server_url: str | None, directory: Path, name: str) -> Iterator[str]:
    """The URL of a new database: on the PostgreSQL server (dropped after), or an SQLite file."""
    if server_url is None:
        yield f"sqlite:///{directory / name}.db"
        return
    url = f"{server_url}/t{uuid.uuid4().hex[:8]}_{name}"
    create_missing({name: url})
    try:
        yield url
    finally:
        drop({name: url})


@contextlib.asynccontextmanager
async def broker_and_payment_database(
    state_dir: Path, kind: BrokerKind = "embedded"
) -> AsyncIterator[tuple[str, Database]]:
    """A broker and a migrated payment database, for a consumer loop run in-process."""
    with started_broker(kind, state_dir) as broker:
        url = f"sqlite:///{state_dir / 'paymentdb.db'}"
        await asyncio.to_thread(upgrade, find("payment"), url)
        db = Database(url)
        try:
            yield broker.bootstrap_servers, db
        finally:
            await db.dispose()


@contextlib.contextmanager
def running_stack(
    state_dir: Path, parts: Parts, *, server_url: str | None = None, **overrides: Any
) -> Iterator[Stack]:
    """The whole stack on `parts`; PostgreSQL databases go on `server_url` (the session's
    server) under a prefix of their own, and are dropped after."""
    require_broker(parts.broker)
    on_postgres = parts.database == "postgresql"
    if on_postgres and server_url is None and "database_url" not in overrides:
        raise ValueError("a stack on PostgreSQL needs the session's server_url")
    config = StackConfig(
        state_dir=state_dir,
        database_url=overrides.pop("database_url", server_url if on_postgres else None),
        broker=parts.broker,
        ports={service: free_port() for service in SERVICES},
        database_prefix=f"t{uuid.uuid4().hex[:8]}_" if on_postgres else "",
        **overrides,
    )
    stack = Stack(config)
    stack.start(ready_timeout_s=120)
    try:
        yield stack
    finally:
        stack.stop()
        if on_postgres:
            drop(stack.urls)


# uvicorn closes a keep-alive connection idle for 5 s: a client reusing one at that moment gets
# "Server disconnected without sending a response". Idle connections are dropped here first.
KEEPALIVE_EXPIRY_S = 2.0


def http_client(**options: Any) -> httpx.AsyncClient:
    """An HTTP client for a test's stack: 30 s timeout, idle connections dropped after 2 s."""
    limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
    return httpx.AsyncClient(**{"timeout": 30, "limits": limits, **options})


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 30, what: str = "condition"
) -> T:
    """Poll until `probe` returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


class Api:
    """The four services' HTTP APIs of one stack."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient) -> None:
        self.stack = stack
        self.client = client

    def url(self, service: str, path: str) -> str:
        return f"{self.stack.service_url(service)}{path}"

    async def account(self, balance: str) -> str:
        account_id = f"c-{uuid.uuid4().hex[:12]}"
        response = await self.client.post(
            self.url("payment", "/accounts"), json={"id": account_id, "balance": balance}
        )
        assert response.status_code == 201, response.text
        return account_id

    async def product(self, quantity: int) -> str:
        product_id = f"p-{uuid.uuid4().hex[:12]}"
        response = await self.client.post(
            self.url("stock", "/products"), json={"id": product_id, "quantity": quantity}
        )
        assert response.status_code == 201, response.text
        return product_id

    async def balance(self, account_id: str) -> str:
        response = await self.client.get(self.url("payment", f"/accounts/{account_id}"))
        return str(response.json()["balance"])

    async def stock(self, product_id: str) -> int:
        response = await self.client.get(self.url("stock", f"/products/{product_id}"))
        return int(response.json()["quantity"])

    async def order(self, customer: str, *items: tuple[str, int, str]) -> dict[str, Any]:
        body = {
            "customer_id": customer,
            "items": [{"product_id": p, "quantity": q, "unit_price": u} for p, q, u in items],
        }
        response = await self.client.post(self.url("order", "/orders"), json=body)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    async def get(self, service: str, path: str) -> httpx.Response:
        return await self.client.get(self.url(service, path))

    async def decided(self, order_id: str, within: float = 30) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            order: dict[str, Any] = (await self.get("order", f"/orders/{order_id}")).json()
            return order if order["status"] != "PENDING" else None

        return await eventually(probe, within=within, what=f"order {order_id} to be decided")

    async def saga(self, saga_id: str) -> dict[str, Any]:
        response = await self.get("orchestrator", f"/sagas/{saga_id}")
        assert response.status_code == 200, response.text
        saga: dict[str, Any] = response.json()
        return saga

    async def saga_status(self, saga_id: str, status: str, within: float = 30) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            response = await self.get("orchestrator", f"/sagas/{saga_id}")
            saga: dict[str, Any] = response.json() if response.status_code == 200 else {}
            return saga if saga.get("status") == status else None

        return await eventually(probe, within=within, what=f"saga {saga_id} to be {status}")


class Kafka:
    """Produce raw records and read topics from their beginning, as a test bystander."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")

    async def __aenter__(self) -> Kafka:
        await self.producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.producer.stop()

    async def send(
        self, topic: str, value: bytes, key: bytes | None, headers: Headers | None = None
    ) -> None:
        await self.producer.send_and_wait(topic, value=value, key=key, headers=headers or [])

    async def send_envelope(self, topic: str, envelope: Envelope) -> None:
        await self.send(topic, envelope.encode(), envelope.key, envelope.headers())

    async def read(
        self, topic: str, match: Callable[[Any], bool], *, count: int = 1, within: float = 30
    ) -> list[Any]:
        """Wait until `count` records of `topic` satisfy `match`; return all that do."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            consumer.assign(await partitions_of(consumer, topic, within=within))
            await consumer.seek_to_beginning()
            found: list[Any] = []
            deadline = time.monotonic() + within
            while len(found) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                found += [r for part in batches.values() for r in part if match(r)]
            # Anything more already there is read too, so "exactly n" can be asserted.
            batches = await consumer.getmany(timeout_ms=300)
            found += [r for part in batches.values() for r in part if match(r)]
            return found
        finally:
            await consumer.stop()


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, *, within: float = 30
) -> list[TopicPartition]:
    """The partitions of `topic`, once the consumer's metadata knows it (a consumer with
    partitions assigned asks for metadata of their topics alone: use a fresh one)."""

    async def known() -> set[int] | None:
        found = consumer.partitions_for_topic(topic)
        if not found:
            await consumer._client.force_metadata_update()  # the topic is in the next metadata
        return found or None

    numbers = await eventually(known, within=within, what=f"the partitions of {topic}")
    return [TopicPartition(topic, number) for number in sorted(numbers)]


def of_saga(saga_id: uuid.UUID | str, type_: str | None = None) -> Callable[[Any], bool]:
    """Match records of one saga (by key), optionally of one message type (by header)."""
    key = str(saga_id).encode()

    def match(record: Any) -> bool:
        if record.key != key:
            return False
        return type_ is None or header_value(record.headers, "type") == type_

    return match
