"""A broker SIGKILLed and started again. The embedded broker restarts with nothing: topics,
messages and committed offsets are gone, and consumers whose positions were far along must read
the re-created topics from their start. Apache Kafka comes back on its log directory, with no
help from the stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from sagaline.domain.definition import load_definition
from sagaline.lab.stack import Stack
from sagaline.lab.verify import verify
from tests.integration.support import BROKERS, Api, Kafka, Parts, running_stack

FAR = 200  # records the stock service reads before the restart, so its offsets are far along


@pytest.fixture(scope="module", params=BROKERS)
def restarted_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A short step timeout, so a message the restart lost is re-sent within seconds."""
    with running_stack(
        tmp_path_factory.mktemp("restart"), Parts(request.param, "sqlite"), step_timeout_s=1.0
    ) as stack:
        yield stack


async def test_sagas_finish_after_the_broker_lost_everything(
    restarted_stack: Stack, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    stack, api = restarted_stack, Api(restarted_stack, client)
    customer = await api.account("1000.00")
    product = await api.product(100)
    key = str(uuid.uuid4()).encode()
    async with Kafka(stack.bootstrap_servers) as kafka:
        for _ in range(FAR):  # garbage, dead-lettered: it only moves the offsets along
            await kafka.send("stock", b"not json", key)
        await kafka.read("stock.dlt", lambda r: r.key == key, count=FAR, within=60)
    before = await api.order(customer, (product, 1, "1.00"))
    assert (await api.decided(before["id"]))["status"] == "APPROVED"

    await asyncio.to_thread(stack.kill_broker)
    assert await asyncio.to_thread(stack.restart_broker)
    # Every topic back with the saga's layout, not one the broker auto-created for a client
    # that reached it first (the embedded broker's own default is 4 partitions).
    definition = load_definition(stack.config.saga_file)
    layout = {topic: definition.spec.kafka.partitions for topic in definition.topics()}
    assert await topic_partitions(stack, list(layout)) == layout

    orders = [await api.order(customer, (product, 1, "1.00")) for _ in range(5)]
    decided = [await api.decided(order["id"], within=60) for order in orders]
    assert [order["status"] for order in decided] == ["APPROVED"] * 5
    assert await api.balance(customer) == "994.00"
    assert await api.stock(product) == 94
    report = await asyncio.to_thread(verify, stack.urls)
    assert report.ok, report.as_dict()
    # No write collided with records a client sent before the topics were re-created.
    assert "AlreadyExists" not in (stack.logs / "broker.log").read_text()


async def topic_partitions(stack: Stack, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}
