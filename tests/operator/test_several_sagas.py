"""Several Sagas in one namespace: each gets its own topics, Kafka users and services, named
after it (the order saga keeps the names it always had), and each is Ready on its own."""

from __future__ import annotations

import copy

import pytest
from sagaline_operator import manifests

from sagaline.domain.definition import SagaDefinition
from tests.operator.support import (
    DEPLOYMENTS,
    SAGAS,
    SERVICES,
    TOPICS,
    USERS,
    Api,
    condition,
    eventually,
    mark_deployments_ready,
    mark_ready,
    objects,
    order_saga,
    running,
    saga,
)
from tests.unit.test_definition import EXPECTED_TOPICS

SCRAM = {"authentication": {"type": "scram-sha-512"}}
ORDER_UNITS = ["order-orchestrator", "order-service", "payment-service", "stock-service"]
ORDER2_UNITS = [
    "order2-orchestrator",
    "order2-order-service",
    "order2-payment-service",
    "order2-stock-service",
]
TEAM_IMAGE = "registry.example/stock-team/stock:2.0"


def renamed(document: dict, name: str) -> dict:
    """The same Saga under another name (the same steps, the same databases' Secrets)."""
    document = copy.deepcopy(document)
    document["metadata"]["name"] = name
    return document


def both_ready(cluster) -> bool:
    mark_ready(cluster, TOPICS)
    mark_ready(cluster, USERS)
    mark_deployments_ready(cluster)
    return all(
        condition(saga(cluster, name), "Ready").get("status") == "True"
        for name in ("order", "order2")
    )


async def test_two_sagas_with_the_same_steps_are_ready_side_by_side(cluster, api: Api, config):
    kafka = {**order_saga()["spec"]["kafka"], **SCRAM}
    order = order_saga(kafka=kafka)
    order2 = renamed(order, "order2")
    order2["spec"]["steps"][1]["image"] = TEAM_IMAGE
    async with running(config):
        await api.create(SAGAS, order)
        await api.create(SAGAS, order2)
        await eventually(lambda: both_ready(cluster), within=30, what="both Sagas Ready")

    order2_topics = [f"order2.{topic}" for topic in EXPECTED_TOPICS]
    topics = objects(cluster, TOPICS)
    assert sorted(topics) == sorted([*EXPECTED_TOPICS, *order2_topics])
    for name, topic in topics.items():
        assert topic["spec"]["topicName"] == name
        owner = "order2" if name.startswith("order2.") else "order"
        assert topic["metadata"]["labels"]["sagaline.io/saga"] == owner
    for resource in (DEPLOYMENTS, SERVICES, USERS):
        assert sorted(objects(cluster, resource)) == sorted([*ORDER_UNITS, *ORDER2_UNITS])

    deployments = objects(cluster, DEPLOYMENTS)
    for name in ORDER2_UNITS:
        assert deployments[name]["metadata"]["labels"]["sagaline.io/saga"] == "order2"
    team = deployments["order2-stock-service"]["spec"]["template"]["spec"]
    assert {c["image"] for c in [*team["initContainers"], *team["containers"]]} == {TEAM_IMAGE}
    assert deployments["stock-service"]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "sagaline:dev"
    )

    users = objects(cluster, USERS)
    acls = users["order2-payment-service"]["spec"]["authorization"]["acls"]
    readable = {a["resource"]["name"] for a in acls if "Read" in a["operations"]}
    assert readable == {"order2.payment", "order2.payment.compensation", "sagaline-order2-payment"}
    acls = users["payment-service"]["spec"]["authorization"]["acls"]
    assert "order2.payment" not in {a["resource"]["name"] for a in acls}
    for name in ("order", "order2"):
        assert (saga(cluster, name) or {})["status"]["topics"] == "11/11"


def test_every_child_name_of_two_sagas_is_their_own():
    order = SagaDefinition.model_validate(
        order_saga(kafka={**order_saga()["spec"]["kafka"], **SCRAM})
    )
    order2 = SagaDefinition.model_validate(renamed(order.model_dump(by_alias=True), "order2"))

    def names(definition: SagaDefinition) -> set[tuple[str, str]]:
        built = [
            *manifests.kafka_topics(definition),
            *manifests.kafka_users(definition),
            *manifests.workloads(definition, None),
        ]
        return {(obj["kind"], obj["metadata"]["name"]) for obj in built}

    assert not names(order) & names(order2)
    assert {name for kind, name in names(order) if kind == "Deployment"} == set(ORDER_UNITS)


@pytest.mark.parametrize(("saga_name", "step"), [("a" * 31, "b" * 31)])
def test_names_longer_than_a_dns_label_are_refused_saying_which(saga_name, step):
    from sagaline_operator.reconcile import Refused, parse

    document = renamed(order_saga(), saga_name)
    document["spec"]["steps"][0]["name"] = step
    document["metadata"]["namespace"] = "shop"
    with pytest.raises(Refused, match=f"{saga_name}-{step}-service") as refused:
        parse(document)
    assert refused.value.reason == "InvalidSpec"


async def test_a_saga_without_an_initiator_is_ready_without_one(cluster, api: Api, config):
    solo = renamed(order_saga(initiator={"enabled": False}), "solo")
    async with running(config):
        await api.create(SAGAS, solo)

        def ready() -> bool:
            mark_ready(cluster, TOPICS)
            mark_deployments_ready(cluster)
            return condition(saga(cluster, "solo"), "Ready").get("status") == "True"

        await eventually(ready, within=30, what="the Saga without an initiator Ready")
    assert sorted(objects(cluster, DEPLOYMENTS)) == [
        "solo-orchestrator",
        "solo-payment-service",
        "solo-stock-service",
    ]
    assert (saga(cluster, "solo") or {})["status"]["workloads"] == "3/3"
