"""Several Sagas in one namespace, on the real API server with the operator under the chart's
role: two copies of the order Saga under other names (the same steps), each Ready side by side
with its own KafkaTopics, KafkaUsers and Deployments, named after it, and one step in an image of
its own; then each completes a saga through its own services (run as local processes, side by
side in one stack, on the topics the operator's KafkaTopics made).

Local control plane only (`local_only`): the KafkaUsers need the SCRAM listener of the session's
Kafka, which the kind workflow's Kafka does not have."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from sagaline.domain.definition import load_definition
from sagaline.lab.databases import database_urls
from sagaline.lab.launchers.apache_kafka import ApacheKafka
from sagaline.lab.ports import free_port
from sagaline.lab.stack import Stack
from sagaline.services.registry import instances_of
from tests.e2e.local_stack import cluster_stack
from tests.e2e.support import (
    SAGA_FILE,
    Body,
    Cluster,
    OperatorProcess,
    get,
    get_or_none,
    is_true,
    items,
    load_yaml,
    wait_for,
)

SAGAS = ("order2", "order3")
TEAM_IMAGE = "registry.example/stock-team/stock:2.0"  # order3's stock step ships its own
ORDER = load_definition(SAGA_FILE)
READY_WITHIN = 120


def document(name: str) -> Body:
    saga = load_yaml(SAGA_FILE)
    saga["metadata"]["name"] = name
    spec = saga["spec"]
    spec["topicDeletionPolicy"] = "delete"  # the test leaves no topic behind
    spec["kafka"]["authentication"] = {"type": "scram-sha-512"}
    if name == "order3":
        spec["steps"][1]["image"] = TEAM_IMAGE
    return saga


def units(saga: str) -> set[str]:
    services = ["order", *ORDER.step_names]
    return {f"{saga}-orchestrator", *(f"{saga}-{service}-service" for service in services)}


def selector(saga: str) -> str:
    return f"sagaline.io/saga={saga}"


@pytest.fixture(scope="module")
def applied(
    cluster: Cluster,
    installed: str,
    databases: str | None,
    operator: OperatorProcess | None,
    local_only: None,
) -> Iterator[str]:
    for saga in SAGAS:
        cluster.kubectl("apply", "-n", installed, "-f", "-", input=yaml.safe_dump(document(saga)))
    yield installed
    for saga in SAGAS:
        cluster.kubectl("delete", "saga", saga, "-n", installed, "--wait=false")
    wait_for(
        lambda: not any(items(cluster, "kafkatopics", installed, selector(s)) for s in SAGAS),
        within=60,
        what="the Sagas and their topics to go (topicDeletionPolicy: delete)",
    )


def test_two_sagas_are_ready_side_by_side(
    cluster: Cluster, applied: str, operator: OperatorProcess | None
) -> None:
    def both_ready() -> bool:
        if operator is not None and not operator.alive():
            raise AssertionError(f"the operator exited:\n{operator.log_tail()}")
        return all(is_true(get_or_none(cluster, "saga", saga, "-n", applied)) for saga in SAGAS)

    try:
        wait_for(both_ready, within=READY_WITHIN, what="both Sagas Ready")
    except AssertionError as exc:
        states = {s: (get_or_none(cluster, "saga", s, "-n", applied) or {}) for s in SAGAS}
        conditions = {s: body.get("status", {}).get("conditions") for s, body in states.items()}
        raise AssertionError(f"{exc}: {json.dumps(conditions, indent=1)}") from exc

    for saga in SAGAS:
        topics = items(cluster, "kafkatopics", applied, selector(saga))
        assert {t["metadata"]["name"] for t in topics} == {f"{saga}.{t}" for t in ORDER.topics()}
        assert all(is_true(topic) for topic in topics), saga
        users = items(cluster, "kafkausers", applied, selector(saga))
        assert {u["metadata"]["name"] for u in users} == units(saga)
        assert all(is_true(user) for user in users), saga
        deployments = items(cluster, "deployments", applied, selector(saga))
        assert {d["metadata"]["name"] for d in deployments} == units(saga)
        for deployment in deployments:
            status = deployment["status"]
            assert status.get("availableReplicas") == deployment["spec"]["replicas"], status
            pod = deployment["spec"]["template"]["spec"]
            images = {c["image"] for c in [*pod["initContainers"], *pod["containers"]]}
            own = saga == "order3" and deployment["metadata"]["name"] == "order3-stock-service"
            assert images == ({TEAM_IMAGE} if own else {ORDER.spec.image})


@pytest.fixture(scope="module")
def services(
    cluster: Cluster, applied: str, e2e_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """Each Saga's services as local processes (KWOK runs no container), side by side in one
    stack (`sagaline up --saga-file A --saga-file B`), on the topics the operator's KafkaTopics
    made, with the Saga files the operator wrote into their ConfigMaps, each service on a
    database of its own on the session's PostgreSQL."""
    kafka: ApacheKafka = request.getfixturevalue("kafka")
    server: str = request.getfixturevalue("postgres_server")
    files = []
    for saga in SAGAS:
        config = get(cluster, "configmap", f"{saga}-orchestrator", "-n", applied)["data"]
        (path := e2e_dir / f"{saga}-from-configmap.yaml").write_text(next(iter(config.values())))
        files.append(path)
    instances = [i for path in files for i in instances_of(load_definition(path))]
    names = {instance.name: instance.database for instance in instances}
    urls = database_urls(server, e2e_dir, prefix="several_", services=names)
    stack = cluster_stack(
        e2e_dir / "several-sagas",
        files[0],
        kafka.bootstrap_servers,
        server,
        urls,
        {name: free_port() for name in names},
        partitions=ORDER.spec.kafka.partitions,
        more_saga_files=files[1:],
    )
    stack.start(ready_timeout_s=120)
    try:
        yield stack
    finally:
        stack.stop()


def test_each_saga_completes_sagas_through_its_own_services(services: Stack) -> None:
    with httpx.Client(timeout=10) as http:
        for saga in SAGAS:

            def url(service: str, path: str, saga: str = saga) -> str:
                return f"{services.service_url(f'{saga}-{service}')}{path}"

            account, product = f"c-{saga}-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
            response = http.post(url("payment", "/accounts"), json={"id": account, "balance": "50"})
            assert response.status_code == 201, response.text
            response = http.post(url("stock", "/products"), json={"id": product, "quantity": 5})
            assert response.status_code == 201, response.text
            item = {"product_id": product, "quantity": 1, "unit_price": "10.00"}
            response = http.post(
                url("order", "/orders"), json={"customer_id": account, "items": [item]}
            )
            assert response.status_code == 201, response.text
            order_id = response.json()["id"]

            def decided(order_id: str = order_id, url=url) -> str | None:
                status = http.get(url("order", f"/orders/{order_id}")).json()["status"]
                return None if status == "PENDING" else str(status)

            assert wait_for(decided, within=90, what=f"{saga}'s order to be decided") == "APPROVED"
            assert http.get(url("orchestrator", f"/sagas/{order_id}")).json()["status"] == (
                "COMPLETED"
            )
            assert http.get(url("stock", f"/products/{product}")).json()["quantity"] == 4
