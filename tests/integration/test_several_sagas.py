"""Two Sagas side by side in one stack (`sagaline up --saga-file A --saga-file B`): the order
saga and a copy of it named `order2`, with the same step declarations. Each has its own
orchestrator, initiator and steps (processes, ports, databases) and its own topics, and completes
and compensates its sagas on its own: nothing of one saga is seen by the other's services. On
the embedded broker and SQLite only: what is checked does not depend on the parts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from sagaline.domain.envelope import Envelope
from sagaline.domain.messages import SagaTopics
from sagaline.lab.stack import Stack
from tests.integration.support import EMBEDDED_SQLITE, Api, Kafka, http_client, running_stack

ORDER_YAML = Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml"
SAGAS = ("order", "order2")


class SagaApi(Api):
    """The services of one Saga of the stack: `payment` is `order2-payment` for `order2`."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient, saga: str) -> None:
        super().__init__(stack, client)
        self.saga_name = saga

    def url(self, service: str, path: str) -> str:
        name = service if self.saga_name == "order" else f"{self.saga_name}-{service}"
        return f"{self.stack.service_url(name)}{path}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("several_sagas")
    document = yaml.safe_load(ORDER_YAML.read_text())
    document["metadata"]["name"] = "order2"
    order2 = state_dir / "order2.yaml"
    order2.write_text(yaml.safe_dump(document, sort_keys=False))
    with running_stack(
        state_dir, EMBEDDED_SQLITE, saga_file=ORDER_YAML, more_saga_files=[order2]
    ) as running:
        yield running


@pytest.fixture
async def apis(stack: Stack) -> AsyncIterator[dict[str, SagaApi]]:
    async with http_client() as client:
        yield {saga: SagaApi(stack, client, saga) for saga in SAGAS}


def test_each_saga_runs_its_own_processes_and_databases(stack: Stack) -> None:
    for service in ("orchestrator", "order", "payment", "stock"):
        for name in (service, f"order2-{service}"):
            assert stack.processes[name].alive() and stack.processes[f"{name}-relay"].alive()
        assert stack.urls[service] != stack.urls[f"order2-{service}"]
        assert stack.config.ports[service] != stack.config.ports[f"order2-{service}"]


async def test_each_saga_completes_and_compensates_on_its_own_topics(
    stack: Stack, apis: dict[str, SagaApi]
) -> None:
    placed: dict[str, tuple[str, str]] = {}
    for saga, api in apis.items():
        customer, product = await api.account("100.00"), await api.product(5)
        approved = await api.order(customer, (product, 2, "10.00"))
        rejected = await api.order(customer, (product, 1, "500.00"))  # more than the balance
        placed[saga] = (approved["id"], rejected["id"])
    for saga, api in apis.items():
        approved_id, rejected_id = placed[saga]
        assert (await api.decided(approved_id))["status"] == "APPROVED"
        assert (await api.decided(rejected_id))["status"] == "REJECTED"
        assert (await api.saga(approved_id))["status"] == "COMPLETED"
        assert (await api.saga(rejected_id))["status"] == "COMPENSATED"
        other = placed["order2" if saga == "order" else "order"][0]
        assert (await api.get("orchestrator", f"/sagas/{other}")).status_code == 404

    async with Kafka(stack.bootstrap_servers) as kafka:
        for saga in SAGAS:
            topics = SagaTopics(saga)
            ids = {str(saga_id) for saga_id in placed[saga]}
            for topic in (topics.orchestrator, topics.step("payment").command, topics.response):
                records = await kafka.read(topic, lambda record: True, count=2)
                seen = [Envelope.decode(record.value) for record in records]
                assert {str(e.saga_id) for e in seen} >= ids, topic
                assert {e.saga for e in seen} == {saga}, f"{topic} carries another saga's"
