"""Several Sagas in one namespace, on the real API server with the operator under the chart's
role: two copies of the order Saga under other names (the same steps), each Ready side by side
with its own KafkaTopics, KafkaUsers and Deployments, named after it, and one step in an image of
its own.

Local control plane only (`local_only`): the KafkaUsers need the SCRAM listener of the session's
Kafka, which the kind workflow's Kafka does not have."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from sagaline.domain.definition import load_definition
from tests.e2e.support import (
    SAGA_FILE,
    Body,
    Cluster,
    OperatorProcess,
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
