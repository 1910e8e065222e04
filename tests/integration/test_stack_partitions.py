"""A local stack lays its topics out with its own partition count (`sagaline up`, `demo`,
`bench` and `chaos` default to one: one process consumes each topic there), not the Saga's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from sagaline.domain.definition import load_definition
from sagaline.lab.stack import Stack
from tests.integration.support import Api, Parts, running_stack

PARTITIONS = 2  # neither the Saga's 6, nor the embedded broker's own default of 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    parts = Parts("embedded", "sqlite")
    directory = tmp_path_factory.mktemp("partitions")
    with running_stack(directory, parts, topic_partitions=PARTITIONS) as stack:
        yield stack


async def test_the_topics_have_the_stacks_partition_count(stack: Stack) -> None:
    definition = load_definition(stack.config.saga_file)
    assert definition.spec.kafka.partitions != PARTITIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(definition.topics())
    finally:
        await admin.close()

    layout = {topic["topic"]: len(topic["partitions"]) for topic in described}
    assert layout == dict.fromkeys(definition.topics(), PARTITIONS)


async def test_each_service_holds_every_partition_and_sagas_finish(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    api = Api(stack, client)
    readyz = (await client.get(api.url("payment", "/readyz"))).json()
    customer = await api.account("10.00")
    product = await api.product(3)

    order = await api.order(customer, (product, 2, "1.50"))

    # payment consumes `payment` and `payment.compensation`: all of both, and nothing more.
    assert readyz["partitions"] == 2 * PARTITIONS
    assert (await api.decided(order["id"]))["status"] == "APPROVED"
    assert await api.balance(customer) == "7.00"
    assert await api.stock(product) == 1
