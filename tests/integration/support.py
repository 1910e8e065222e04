"""Helpers of the integration tests: a running stack per backend, HTTP calls, Kafka access."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sagaline.broker import EmbeddedBroker
from sagaline.databases import drop
from sagaline.ports import free_port
from sagaline.stack import Stack, StackConfig
from services.common.db import Database
from services.common.envelope import Envelope, Headers, header_value
from services.common.migrate import upgrade
from services.registry import SERVICES

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432"
T = TypeVar("T")


@contextlib.asynccontextmanager
async def broker_and_payment_database(state_dir: Path) -> AsyncIterator[tuple[str, Database]]:
    """An embedded broker and a migrated payment database, for a consumer loop run in-process."""
    broker = EmbeddedBroker(log_path=state_dir / "broker.log")
    broker.start()
    url = f"sqlite:///{state_dir / 'paymentdb.db'}"
    try:
        await asyncio.to_thread(upgrade, url, "payment", participant=True)
        db = Database(url)
        try:
            yield broker.bootstrap_servers, db
        finally:
            await db.dispose()
    finally:
        broker.stop()


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(f"{POSTGRES_URL}/postgres", connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def running_stack(state_dir: Path, backend: str, **overrides: Any) -> Iterator[Stack]:
    postgres = backend == "postgresql"
    config = StackConfig(
        state_dir=state_dir,
        database_url=overrides.pop("database_url", POSTGRES_URL if postgres else None),
        ports={service: free_port() for service in SERVICES},
        database_prefix=f"t{uuid.uuid4().hex[:8]}_" if postgres else "",
        **overrides,
    )
    stack = Stack(config)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        if postgres:
            drop(stack.urls)


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
            partitions = await eventually(
                lambda: _partitions(consumer, topic), within=within, what=f"topic {topic}"
            )
            consumer.assign([TopicPartition(topic, p) for p in partitions])
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


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()  # the topic appears in the next metadata
        return None
    return set(partitions)


def of_saga(saga_id: uuid.UUID | str, type_: str | None = None) -> Callable[[Any], bool]:
    """Match records of one saga (by key), optionally of one message type (by header)."""
    key = str(saga_id).encode()

    def match(record: Any) -> bool:
        if record.key != key:
            return False
        return type_ is None or header_value(record.headers, "type") == type_

    return match
