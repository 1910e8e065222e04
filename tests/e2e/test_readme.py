"""README, "On Kubernetes", line by line, on a real cluster:

    helm install sagaline-operator charts/sagaline-operator -n sagaline --create-namespace
    kubectl apply -n sagaline -f k8s/databases/
    kubectl apply -n sagaline -f k8s/sagas/order.yaml
    kubectl get sagas -n sagaline

then what a platform team does next: an order through the services, a spec edit, Kafka
authentication, and deleting the Saga under each topic deletion policy. The tests run in this
order and build on each other (one cluster, one Saga); each waits for what it checks, with a
deadline, and says what it waited for.

One module past 400 lines on purpose: its tests are one story on one cluster, in order."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from sagaline.domain.definition import load_definition
from sagaline.lab.launchers.apache_kafka import ApacheKafka
from tests.e2e.cnpg_standin import database_url
from tests.e2e.local_stack import cluster_stack
from tests.e2e.strimzi_standin import StrimziStandIn
from tests.e2e.support import (
    KIND,
    KIND_NEEDS_DOCKER,
    RELEASE,
    ROOT,
    SAGA_FILE,
    Body,
    Cluster,
    OperatorProcess,
    PortForward,
    condition,
    get,
    get_or_none,
    is_true,
    items,
    load_yaml,
    mode,
    wait_for,
)

SAGA = "order"
SAGA_SELECTOR = f"sagaline.io/saga={SAGA}"
DEFINITION = load_definition(SAGA_FILE)
TOPICS = sorted(DEFINITION.topics())
DEPLOYMENTS = {
    "order-orchestrator": DEFINITION.spec.orchestrator.replicas,
    "order-service": DEFINITION.spec.initiator.replicas,
    **{f"{step.name}-service": step.replicas for step in DEFINITION.spec.steps},
}
COLUMNS = [
    "NAME",
    "EXECUTION",
    "STEPS",
    "TOPICS",
    "READY",
    "RUNNING",
    "COMPLETED",
    "COMPENSATED",
    "FAILED",
    "AGE",
]
READY_WITHIN = 180 if mode() == KIND else 90  # kind pulls, migrates and starts real containers


def kind_brokers() -> int:
    """The brokers of the kind workflow's Kafka (k8s/dev/kafka.yaml: one)."""
    return int(os.environ.get("SAGALINE_E2E_KAFKA_BROKERS", "1"))


def saga_document(**spec_changes: Any) -> Body:
    """k8s/sagas/order.yaml; on kind with the image the workflow built and loaded, and no more
    topic replicas than its Kafka has brokers (as the Tiltfile does)."""
    document = load_yaml(SAGA_FILE)
    if mode() == KIND:
        spec = document["spec"]
        spec["image"] = os.environ.get("SAGALINE_E2E_IMAGE", "sagaline:e2e")
        kafka = spec.setdefault("kafka", {})
        kafka["replicas"] = min(kafka.get("replicas", 3), kind_brokers())
        if kafka.get("minInsyncReplicas", 0) > kafka["replicas"]:
            kafka["minInsyncReplicas"] = kafka["replicas"]
    document["spec"].update(spec_changes)
    return document


def apply_saga(cluster: Cluster, namespace: str, document: Body | None = None) -> None:
    """`kubectl apply -n sagaline -f k8s/sagas/order.yaml` (the file itself when unchanged)."""
    if document is None and mode() != KIND:
        cluster.kubectl("apply", "-n", namespace, "-f", str(SAGA_FILE))
        return
    text = yaml.safe_dump(document or saga_document())
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text)


def saga_ready(cluster: Cluster, namespace: str) -> Body | None:
    """The Saga when Ready=True for its current generation."""
    saga = get_or_none(cluster, "saga", SAGA, "-n", namespace)
    if saga is None or not is_true(saga):
        return None
    ready = condition(saga, "Ready") or {}
    generation = saga["metadata"]["generation"]
    observed = saga.get("status", {}).get("observedGeneration")
    if ready.get("observedGeneration", generation) != generation or observed != generation:
        return None
    return saga


def wait_ready(cluster: Cluster, namespace: str, operator: OperatorProcess | None) -> Body:
    def probe() -> Body | None:
        if operator is not None and not operator.alive():
            raise AssertionError(f"the operator exited:\n{operator.log_tail()}")
        return saga_ready(cluster, namespace)

    try:
        return wait_for(probe, within=READY_WITHIN, what="the Saga to be Ready")
    except AssertionError as exc:
        saga = get_or_none(cluster, "saga", SAGA, "-n", namespace) or {}
        conditions = json.dumps(saga.get("status", {}).get("conditions"), indent=1)
        log = operator.log_tail() if operator is not None else ""
        raise AssertionError(f"{exc}; its conditions: {conditions}\n{log}") from exc


@pytest.fixture(scope="module")
def namespace(installed: str, databases: str | None, operator: OperatorProcess | None) -> str:
    """The chart installed, the databases applied, the operator running."""
    return installed


@pytest.fixture(scope="module")
def applied(cluster: Cluster, namespace: str) -> str:
    """README: `kubectl apply -n sagaline -f k8s/sagas/order.yaml`."""
    apply_saga(cluster, namespace)
    return namespace


# -- what the README and docs/kubernetes.md promise ------------------------------------------------


def test_the_saga_becomes_ready(
    cluster: Cluster, applied: str, operator: OperatorProcess | None
) -> None:
    saga = wait_ready(cluster, applied, operator)
    assert is_true(saga, "TopicsReady")
    assert is_true(saga, "WorkloadsReady")
    assert saga["status"]["topics"] == f"{len(TOPICS)}/{len(TOPICS)}"


def test_kubectl_get_sagas_shows_the_printer_columns(cluster: Cluster, applied: str) -> None:
    lines = cluster.kubectl("get", "sagas", "-n", applied).stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == COLUMNS
    row = dict(zip(COLUMNS, re.split(r"\s{2,}", lines[1].strip()), strict=False))
    assert row["NAME"] == SAGA
    assert row["EXECUTION"] == DEFINITION.spec.execution.value
    assert row["STEPS"] == ",".join(DEFINITION.step_names)
    assert row["TOPICS"] == f"{len(TOPICS)}/{len(TOPICS)}"
    assert row["READY"] == "True"


def test_the_kafka_topics_are_made_and_ready(
    cluster: Cluster, applied: str, request: pytest.FixtureRequest
) -> None:
    """The eleven KafkaTopics, as k8s/topics/ says, each Ready for its generation (Strimzi, or
    its stand-in, which also made them in the real Kafka with the spec's partitions)."""
    topics = {
        t["metadata"]["name"]: t for t in items(cluster, "kafkatopics", applied, SAGA_SELECTOR)
    }
    assert sorted(topics) == TOPICS
    for name, topic in topics.items():
        assert is_true(topic), f"KafkaTopic {name} is not Ready: {topic.get('status')}"
        assert topic["status"]["observedGeneration"] == topic["metadata"]["generation"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == DEFINITION.spec.kafka.cluster
        checked_in = load_yaml(ROOT / "k8s" / "topics" / f"{name}.yaml")["spec"]
        if mode() == KIND:  # fewer replicas on the workflow's Kafka (see saga_document)
            for key in ("replicas", "config"):
                checked_in.pop(key)
                topic["spec"].pop(key)
        assert topic["spec"] == checked_in, f"{name} differs from k8s/topics/{name}.yaml"
    if mode() != KIND:
        strimzi: StrimziStandIn = request.getfixturevalue("strimzi")
        for name in TOPICS:
            assert strimzi.partitions(name) == DEFINITION.spec.kafka.partitions, name
        assert strimzi.errors == []


def test_the_deployments_have_running_and_ready_pods(cluster: Cluster, applied: str) -> None:
    deployments = {d["metadata"]["name"]: d for d in items(cluster, "deployments", applied)}
    for name, replicas in DEPLOYMENTS.items():
        status = deployments[name]["status"]
        assert status.get("availableReplicas") == replicas, f"{name}: {status}"
    nodes = {node["metadata"]["name"] for node in get(cluster, "nodes")["items"]}
    pods = items(cluster, "pods", applied, SAGA_SELECTOR)
    assert len(pods) == sum(DEPLOYMENTS.values())
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Running", name
        assert is_true(pod), name
        assert pod["spec"]["nodeName"] in nodes
        # The relay is a native sidecar: an init container that keeps running.
        sidecars = [c for c in pod["spec"]["initContainers"] if c.get("restartPolicy") == "Always"]
        assert [c["name"] for c in sidecars] == ["relay"], name
        statuses = pod["status"]["containerStatuses"]
        assert all(status["ready"] for status in statuses), name


def test_every_child_belongs_to_the_saga(cluster: Cluster, applied: str) -> None:
    """Owner references to the Saga (the garbage collector deletes them with it) and the
    operator's field manager (server-side apply)."""
    saga = get(cluster, "saga", SAGA, "-n", applied)
    for kind in ("deployments", "services", "configmaps"):
        children = get(cluster, kind, "-n", applied, "-l", SAGA_SELECTOR, "--show-managed-fields")[
            "items"
        ]
        assert {c["metadata"]["name"] for c in children} == set(DEPLOYMENTS), kind
        for child in children:
            owners = child["metadata"].get("ownerReferences") or []
            assert [o["uid"] for o in owners if o.get("controller")] == [saga["metadata"]["uid"]]
            managers = {entry["manager"] for entry in child["metadata"]["managedFields"]}
            assert "sagaline-operator" in managers, (kind, managers)
    budgets = items(cluster, "poddisruptionbudgets", applied, SAGA_SELECTOR)
    assert {b["metadata"]["name"] for b in budgets} == {n for n, r in DEPLOYMENTS.items() if r > 1}


def test_the_operator_runs_under_the_charts_role(
    cluster: Cluster, applied: str, e2e_dir: Path, operator: OperatorProcess | None
) -> None:
    """The chart's ServiceAccount may do what the operator needs and nothing more: the operator
    did all of the above with it, and was refused nothing on the way."""
    if operator is not None:
        log = operator.log_path.read_text(errors="replace")
        refusals = [line for line in log.splitlines() if "403" in line or "orbidden" in line]
        assert refusals == [], "\n".join(refusals[:10])
    kubeconfig = cluster.service_account_kubeconfig(
        RELEASE, applied, e2e_dir / "check-role.kubeconfig"
    )

    def can(*arguments: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", *arguments, kubeconfig=kubeconfig, check=False)
        return answer.stdout.strip() == "yes"

    assert can("patch", "sagas", "-n", applied)
    assert can("patch", "sagas/status", "-n", applied)
    assert can("create", "kafkatopics.kafka.strimzi.io", "-n", applied)
    assert can("create", "kafkausers.kafka.strimzi.io", "-n", applied)
    assert can("create", "deployments.apps", "-n", applied)
    assert not can("get", "secrets", "-n", applied)
    assert not can("create", "pods", "-n", applied)
    assert not can("delete", "sagas", "-n", applied)
    assert not can("create", "deployments.apps", "-n", "default")
    assert not can("list", "namespaces")
    refused = cluster.kubectl("get", "secrets", "-n", applied, kubeconfig=kubeconfig, check=False)
    assert "forbidden" in refused.stderr.lower()


# -- an order through the services ----------------------------------------------------------------


@pytest.fixture
def services(
    cluster: Cluster,
    applied: str,
    databases: str | None,
    e2e_dir: Path,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    """The four services' URLs. Local: the services and relays as local processes on the
    topics the stand-in made, each with the database URL of its Secret; kind: their pods,
    through port-forwards."""
    if mode() == KIND:
        with (
            PortForward(cluster, applied, "svc/order-orchestrator", 8080) as orchestrator,
            PortForward(cluster, applied, "svc/order-service", 8080) as order,
            PortForward(cluster, applied, "svc/payment-service", 8080) as payment,
            PortForward(cluster, applied, "svc/stock-service", 8080) as stock,
        ):
            yield {
                "orchestrator": orchestrator.url,
                "order": order.url,
                "payment": payment.url,
                "stock": stock.url,
            }
        return
    assert databases is not None
    kafka: ApacheKafka = request.getfixturevalue("kafka")
    ports: dict[str, int] = request.getfixturevalue("service_ports")
    saga = get(cluster, "saga", SAGA, "-n", applied)["spec"]
    secrets = {
        "orchestrator": saga["orchestrator"]["database"],
        "order": saga["initiator"]["database"],
        **{step["name"]: step["database"] for step in saga["steps"]},
    }
    urls = {
        service: database_url(
            cluster, applied, ref["secretName"], ref.get("secretKey", "uri"), databases
        )
        for service, ref in secrets.items()
    }
    # The saga as the pods read it: the ConfigMap the operator wrote.
    config = get(cluster, "configmap", "order-orchestrator", "-n", applied)["data"]
    (saga_file := e2e_dir / "saga-from-configmap.yaml").write_text(next(iter(config.values())))
    stack = cluster_stack(
        e2e_dir / "services",
        saga_file,
        kafka.bootstrap_servers,
        databases,
        urls,
        ports,
        partitions=saga["kafka"]["partitions"],
    )
    stack.start(ready_timeout_s=120)
    try:
        yield {service: stack.service_url(service) for service in ports}
    finally:
        stack.stop()


def test_an_order_saga_completes(cluster: Cluster, applied: str, services: dict[str, str]) -> None:
    with httpx.Client(timeout=10) as http:
        account = f"c-{int(time.time() * 1000)}"
        response = http.post(
            f"{services['payment']}/accounts", json={"id": account, "balance": "100.00"}
        )
        assert response.status_code == 201, response.text
        product = f"p-{int(time.time() * 1000)}"
        response = http.post(f"{services['stock']}/products", json={"id": product, "quantity": 5})
        assert response.status_code == 201, response.text
        body = {
            "customer_id": account,
            "items": [{"product_id": product, "quantity": 2, "unit_price": "10.00"}],
        }
        response = http.post(f"{services['order']}/orders", json=body)
        assert response.status_code == 201, response.text
        order_id = response.json()["id"]

        def decided() -> str | None:
            status = http.get(f"{services['order']}/orders/{order_id}").json()["status"]
            return None if status == "PENDING" else str(status)

        assert wait_for(decided, within=90, what=f"order {order_id} to be decided") == "APPROVED"
        assert http.get(f"{services['payment']}/accounts/{account}").json()["balance"] in (
            "80.00",
            "80",
            80,
        )
        assert http.get(f"{services['stock']}/products/{product}").json()["quantity"] == 3

    # The operator reads the counts from the orchestrator: `kubectl get sagas` shows them.
    def completed() -> int | None:
        saga = get(cluster, "saga", SAGA, "-n", applied)
        count = (saga.get("status", {}).get("sagas") or {}).get("completed")
        return count if count else None

    assert wait_for(completed, within=60, what="the Saga's COMPLETED count") >= 1


# -- what only kind shows ------------------------------------------------------------------------


@pytest.fixture
def kind_only() -> None:
    """KWOK's pods run no container and no CloudNativePG runs here: these checks need kind,
    and the local mode does not collect them (conftest.py says so in the summary)."""
    if mode() != KIND:
        pytest.skip(KIND_NEEDS_DOCKER)


def containers(pod: Body) -> dict[str, Body]:
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]
    return {status["name"]: status for status in statuses}


def test_kind_the_containers_run_the_image(cluster: Cluster, applied: str, kind_only: None) -> None:
    image = saga_document()["spec"]["image"]
    for pod in items(cluster, "pods", applied, SAGA_SELECTOR):
        name = pod["metadata"]["name"]
        for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
            assert container["image"].endswith(image.split("/")[-1]), (name, container["image"])
        statuses = containers(pod)
        migrate = statuses["migrate"]["state"].get("terminated") or {}
        assert migrate.get("exitCode") == 0, (name, statuses["migrate"])
        for running in ("relay", "service"):
            assert statuses[running]["state"].get("running"), (name, statuses[running])
            assert statuses[running]["imageID"], name
            assert statuses[running]["ready"], name


def test_kind_the_relay_sidecar_starts_after_the_migrations_and_before_the_service(
    cluster: Cluster, applied: str, kind_only: None
) -> None:
    """The kubelet's native sidecar ordering: migrate (an init container) finishes, then the
    relay (restartPolicy Always) starts, then the service."""
    for pod in items(cluster, "pods", applied, SAGA_SELECTOR):
        statuses = containers(pod)
        migrated = statuses["migrate"]["state"]["terminated"]["finishedAt"]
        relay = statuses["relay"]["state"]["running"]["startedAt"]
        service = statuses["service"]["state"]["running"]["startedAt"]
        assert migrated <= relay <= service, pod["metadata"]["name"]  # RFC 3339, one zone


def test_kind_cloudnativepg_made_the_databases(
    cluster: Cluster, applied: str, kind_only: None
) -> None:
    for pg in items(cluster, "clusters.postgresql.cnpg.io", applied):
        status = pg.get("status") or {}
        assert status.get("readyInstances") == pg["spec"]["instances"], status
    databases = items(cluster, "databases.postgresql.cnpg.io", applied)
    assert {d["spec"]["name"] for d in databases} >= {
        "orderdb",
        "paymentdb",
        "stockdb",
        "order_orchestratordb",
    }
    for database in databases:
        assert (database.get("status") or {}).get("applied") is True, database["metadata"]["name"]


# -- changes ---------------------------------------------------------------------------------------


def replica_sets(cluster: Cluster, namespace: str, deployment: str) -> dict[str, Body]:
    found = items(cluster, "replicasets", namespace, SAGA_SELECTOR)
    return {
        rs["metadata"]["name"]: rs
        for rs in found
        if any(o["name"] == deployment for o in rs["metadata"].get("ownerReferences") or [])
    }


def test_a_spec_edit_rolls_the_deployments(
    cluster: Cluster, applied: str, operator: OperatorProcess | None
) -> None:
    before = {d: replica_sets(cluster, applied, d) for d in DEPLOYMENTS}
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("annotations") or {}
        for d in items(cluster, "deployments", applied, SAGA_SELECTOR)
    }
    timeout = DEFINITION.spec.step_timeout_seconds * 2
    cluster.kubectl(
        "patch", "saga", SAGA, "-n", applied, "--type=merge",
        "-p", json.dumps({"spec": {"stepTimeoutSeconds": timeout}}),
    )  # fmt: skip

    def rolled() -> dict[str, Body] | None:
        done = {}
        for deployment in DEPLOYMENTS:
            current = get(cluster, "deployment", deployment, "-n", applied)
            status, spec = current["status"], current["spec"]
            new = set(replica_sets(cluster, applied, deployment)) - set(before[deployment])
            if not new or current["metadata"]["generation"] != status.get("observedGeneration"):
                return None
            if (
                status.get("updatedReplicas") != spec["replicas"]
                or status.get("availableReplicas") != spec["replicas"]
                or status.get("replicas") != spec["replicas"]
            ):
                return None
            done[deployment] = current
        return done

    rolled_out = wait_for(rolled, within=READY_WITHIN, what="every Deployment to roll out anew")
    for name, deployment in rolled_out.items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        assert annotations != templates[name], f"{name}: the pod template did not change"
    config = get(cluster, "configmap", "order-orchestrator", "-n", applied)["data"]
    assert yaml.safe_load(next(iter(config.values())))["spec"]["stepTimeoutSeconds"] == timeout
    wait_ready(cluster, applied, operator)


def test_more_partitions_grow_the_topics_and_restart_nothing(
    cluster: Cluster, applied: str, operator: OperatorProcess | None, request: pytest.FixtureRequest
) -> None:
    """`kafka.partitions` 6 → 8: every KafkaTopic asks for 8, Strimzi (or its stand-in) grows
    the topic in Kafka; the services' pods stay (the topics' layout is not in their config)."""
    saga = get(cluster, "saga", SAGA, "-n", applied)
    partitions = saga["spec"]["kafka"]["partitions"] + 2
    before = {d: set(replica_sets(cluster, applied, d)) for d in DEPLOYMENTS}
    cluster.kubectl(
        "patch", "saga", SAGA, "-n", applied, "--type=merge",
        "-p", json.dumps({"spec": {"kafka": {"partitions": partitions}}}),
    )  # fmt: skip

    def grown() -> bool:
        topics = items(cluster, "kafkatopics", applied, SAGA_SELECTOR)
        return len(topics) == len(TOPICS) and all(
            t["spec"]["partitions"] == partitions
            and is_true(t)
            and t["status"].get("observedGeneration") == t["metadata"]["generation"]
            for t in topics
        )

    wait_for(
        grown, within=READY_WITHIN, what=f"every KafkaTopic Ready with {partitions} partitions"
    )
    wait_ready(cluster, applied, operator)
    if mode() != KIND:
        strimzi: StrimziStandIn = request.getfixturevalue("strimzi")
        assert {name: strimzi.partitions(name) for name in TOPICS} == dict.fromkeys(
            TOPICS, partitions
        )
    assert {d: set(replica_sets(cluster, applied, d)) for d in DEPLOYMENTS} == before


EXPECTED_WRITES = {  # commands and compensations, the initiator's answers, dead letters
    "order-orchestrator": {
        *(f"{s}{x}" for s in DEFINITION.step_names for x in ("", ".compensation")),
        "orchestrator.response",
        "orchestrator.dlt",
    },
    "order-service": {"orchestrator", "orchestrator.dlt"},
    **{f"{s}-service": {f"{s}.success", f"{s}.dlt"} for s in DEFINITION.step_names},
}
EXPECTED_READS = {
    "order-orchestrator": {
        "orchestrator",
        *(f"{s}{x}" for s in DEFINITION.step_names for x in (".success", ".dlt")),
    },
    "order-service": {"orchestrator.response"},
    **{f"{s}-service": {s, f"{s}.compensation"} for s in DEFINITION.step_names},
}


def topic_operations(user: Body) -> tuple[set[str], set[str]]:
    reads, writes = set(), set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != "topic":
            continue
        assert resource.get("patternType", "literal") == "literal"
        operations = set(acl.get("operations") or [acl.get("operation")])
        if "Read" in operations:
            reads.add(resource["name"])
        if "Write" in operations or "All" in operations:
            writes.add(resource["name"])
    return reads, writes


def produce_as(servers: str, user: str, password: str, topic: str) -> None:
    """One record to `topic`, authenticated as `user` (SCRAM-SHA-512)."""

    async def produce() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=servers,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=user,
            sasl_plain_password=password,
            acks="all",
            request_timeout_ms=10_000,
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b'{"forged": true}', key=b"forged")
        finally:
            await producer.stop()

    asyncio.run(produce())


def test_kafka_authentication_gives_each_service_a_least_privilege_user(
    cluster: Cluster,
    applied: str,
    operator: OperatorProcess | None,
    request: pytest.FixtureRequest,
) -> None:
    """`kafka.authentication: scram-sha-512`: a KafkaUser per service, whose ACLs let only the
    orchestrator write a command; Strimzi (or its stand-in) makes them Ready with their Secret
    and, in the authorizing Kafka, their credentials and ACLs: a command (`payment`) sent by any
    other service is refused by the broker. The pods read the password from the Secret. Taken
    away again, the users go."""
    cluster.kubectl(
        "patch", "saga", SAGA, "-n", applied, "--type=merge",
        "-p", json.dumps({"spec": {"kafka": {"authentication": {"type": "scram-sha-512"}}}}),
    )  # fmt: skip

    def ready_users() -> dict[str, Body] | None:
        users = {
            u["metadata"]["name"]: u for u in items(cluster, "kafkausers", applied, SAGA_SELECTOR)
        }
        if set(users) != set(DEPLOYMENTS) or not all(is_true(u) for u in users.values()):
            return None
        return users

    users = wait_for(ready_users, within=READY_WITHIN, what="a Ready KafkaUser per service")
    command_topics = {f"{s}{x}" for s in DEFINITION.step_names for x in ("", ".compensation")}
    for name, user in users.items():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == DEFINITION.spec.kafka.cluster
        reads, writes = topic_operations(user)
        assert reads == EXPECTED_READS[name], name
        assert writes == EXPECTED_WRITES[name], name
        if name != "order-orchestrator":
            assert not writes & command_topics, f"{name} may write a command"
        groups = [
            a for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"
        ]
        assert len(groups) == 1, name
        secret = get(cluster, "secret", user["status"]["secret"], "-n", applied)
        assert base64.b64decode(secret["data"]["password"])
    if mode() != KIND:  # the stand-in made the users and ACLs real in an authorizing Kafka
        kafka: ApacheKafka = request.getfixturevalue("kafka")
        passwords = {
            name: base64.b64decode(
                get(cluster, "secret", name, "-n", applied)["data"]["password"]
            ).decode()
            for name in users
        }
        for forger in ("payment-service", "stock-service", "order-service"):
            with pytest.raises(TopicAuthorizationFailedError):
                produce_as(kafka.sasl_bootstrap_servers, forger, passwords[forger], "payment")
        produce_as(
            kafka.sasl_bootstrap_servers,
            "order-orchestrator",
            passwords["order-orchestrator"],
            "payment",
        )
    if mode() != KIND:  # the kind workflow's Kafka has no SCRAM listener: its pods would fail
        saga = wait_ready(cluster, applied, operator)
        assert saga["metadata"]["generation"] >= 3

    def sasl_env() -> dict[str, Body] | None:
        deployment = get(cluster, "deployment", "payment-service", "-n", applied)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        return env if "KAFKA_SASL_MECHANISM" in env else None

    env = wait_for(sasl_env, within=60, what="the pods to get the Kafka credentials")
    assert env["KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "payment-service"

    cluster.kubectl(
        "patch", "saga", SAGA, "-n", applied, "--type=merge",
        "-p", json.dumps({"spec": {"kafka": {"authentication": None}}}),
    )  # fmt: skip
    wait_for(
        lambda: not items(cluster, "kafkausers", applied, SAGA_SELECTOR),
        within=60,
        what="the KafkaUsers to go with the authentication",
    )
    wait_ready(cluster, applied, operator)


# -- deleting the Saga ----------------------------------------------------------------------------


def workloads_gone(cluster: Cluster, namespace: str) -> bool:
    """Deployments, ReplicaSets, Pods, Services, ConfigMaps, PodDisruptionBudgets of the Saga:
    all gone (the garbage collector follows the owner references)."""
    kinds = "deployments,replicasets,pods,services,configmaps,poddisruptionbudgets,kafkausers"
    return not get(cluster, kinds, "-n", namespace, "-l", SAGA_SELECTOR)["items"]


def kafka_topics(cluster: Cluster, namespace: str) -> dict[str, Body]:
    found = items(cluster, "kafkatopics", namespace)
    return {t["metadata"]["name"]: t for t in found if t["metadata"]["name"] in TOPICS}


def delete_saga(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("delete", "saga", SAGA, "-n", namespace, "--wait=false")
    wait_for(
        lambda: get_or_none(cluster, "saga", SAGA, "-n", namespace) is None,
        within=60,
        what="the Saga to be deleted (its finalizer handled)",
    )


def test_deleting_the_saga_under_retain_keeps_the_topics(
    cluster: Cluster, applied: str, request: pytest.FixtureRequest
) -> None:
    saga = get(cluster, "saga", SAGA, "-n", applied)
    assert saga["spec"]["topicDeletionPolicy"] == "retain"
    delete_saga(cluster, applied)
    wait_for(
        lambda: workloads_gone(cluster, applied),
        within=90,
        what="the garbage collector to delete the Saga's workloads",
    )
    topics = kafka_topics(cluster, applied)
    assert sorted(topics) == TOPICS
    for name, topic in topics.items():
        owners = topic["metadata"].get("ownerReferences") or []
        assert not [o for o in owners if o["uid"] == saga["metadata"]["uid"]], name
        assert topic["metadata"].get("deletionTimestamp") is None, name
    if mode() != KIND:
        strimzi: StrimziStandIn = request.getfixturevalue("strimzi")
        assert set(TOPICS) <= set(strimzi.topics()), "a retained topic left Kafka"


def test_deleting_the_saga_under_delete_removes_the_topics(
    cluster: Cluster, applied: str, operator: OperatorProcess | None, request: pytest.FixtureRequest
) -> None:
    """The Saga again, with `topicDeletionPolicy: delete`: it takes the retained topics back;
    deleted, its topics go, and with them (Strimzi's finalizer) the topics in Kafka."""
    document = saga_document(topicDeletionPolicy="delete")
    # As many partitions as the retained topics have now (a topic never shrinks).
    retained = max(t["spec"]["partitions"] for t in kafka_topics(cluster, applied).values())
    document["spec"]["kafka"]["partitions"] = retained
    apply_saga(cluster, applied, document)
    wait_ready(cluster, applied, operator)
    delete_saga(cluster, applied)
    wait_for(
        lambda: not kafka_topics(cluster, applied),
        within=90,
        what="the KafkaTopics to be deleted",
    )
    wait_for(
        lambda: workloads_gone(cluster, applied),
        within=90,
        what="the garbage collector to delete the Saga's workloads",
    )
    if mode() != KIND:
        strimzi: StrimziStandIn = request.getfixturevalue("strimzi")
        wait_for(
            lambda: not set(TOPICS) & set(strimzi.topics()),
            within=60,
            what="the topics to leave Kafka",
        )
