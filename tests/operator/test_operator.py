"""The real Kopf runtime, reconciling Sagas against the emulated cluster.

Each test applies a Saga through the API as kubectl would, then asserts on the objects the cluster
holds. Strimzi and the Deployment controller do not run here: the tests mark KafkaTopics and
Deployments ready the way they would.

One module past 400 lines on purpose: the operator's behaviour, one Saga's life, read in order.
"""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest
from sagaline_operator import manifests

from tests.operator.support import (
    CONFIG_MAPS,
    DEPLOYMENTS,
    NAMESPACE,
    SAGAS,
    SERVICES,
    STRIMZI_KAFKA_TOPIC,
    TOPICS,
    USERS,
    Api,
    condition,
    events,
    eventually,
    mark_deployments_ready,
    mark_ready,
    mark_topics_ready,
    objects,
    order_saga,
    running,
    saga,
)
from tests.operator.test_crd import VALIDATOR
from tests.unit.test_definition import EXPECTED_TOPICS

WORKLOADS = ["order-orchestrator", "order-service", "payment-service", "stock-service"]
TOPIC_NAMES = EXPECTED_TOPICS


def saga_status(cluster) -> dict:
    return dict((saga(cluster) or {}).get("status") or {})


def status_of(cluster, kind: str) -> str | None:
    return condition(saga(cluster), kind).get("status")


def ready(cluster) -> bool:
    return status_of(cluster, "Ready") == "True"


def current_and_ready(cluster) -> dict | None:
    """The Saga, if its status speaks of its current generation and says Ready."""
    body = saga(cluster)
    if (
        body is None
        or body.get("status", {}).get("observedGeneration") != body["metadata"]["generation"]
    ):
        return None
    ready_condition = condition(body, "Ready")
    fresh = ready_condition.get("observedGeneration") == body["metadata"]["generation"]
    return body if fresh and ready_condition.get("status") == "True" else None


async def converged(cluster, topics: int = 11, workloads: int = 4) -> dict:
    """Wait for the children and for Ready at the current generation, while playing Strimzi
    and the Deployment controller (they mark what the operator writes ready, as it comes)."""
    await eventually(
        lambda: (
            len(objects(cluster, TOPICS)) == topics
            and len(objects(cluster, DEPLOYMENTS)) == workloads
            and len(objects(cluster, SERVICES)) == workloads
        ),
        what="the children",
    )

    def check() -> dict | None:
        mark_topics_ready(cluster)
        mark_deployments_ready(cluster)
        return current_and_ready(cluster)

    return await eventually(check, what="Ready at the current generation")


def assert_valid(cluster) -> None:
    """Every object the operator made, against the schemas the cluster would apply."""
    for resource in (DEPLOYMENTS, SERVICES, CONFIG_MAPS):
        for obj in objects(cluster, resource).values():
            kubernetes_validate.validate(obj, "1.30", strict=True)
    for topic in objects(cluster, TOPICS).values():
        jsonschema.validate(topic, STRIMZI_KAFKA_TOPIC)
    for body in objects(cluster, SAGAS).values():
        document = {**body, "metadata": {"name": body["metadata"]["name"]}}
        assert list(VALIDATOR.iter_errors(document)) == []


def posted(cluster, kind: str, reason: str | None = None, text: str = "") -> list[dict]:
    """The Events of one type (and reason, and words in the message) posted so far."""
    return [
        e
        for e in events(cluster)
        if e.get("type") == kind
        and reason in (None, e.get("reason"))
        and text in e.get("message", "")
    ]


def pod_hash(deployment: dict) -> str:
    return deployment["spec"]["template"]["metadata"]["annotations"][manifests.CONFIG_HASH]


async def test_a_saga_becomes_its_topics_and_services(cluster, api: Api, config, orchestrator_api):
    async with running(config):
        created = await api.create(SAGAS, order_saga())
        uid = created["metadata"]["uid"]

        # Before Strimzi and the pods are there: not ready, saying why.
        await eventually(lambda: status_of(cluster, "TopicsReady") == "False", what="TopicsReady")
        body = saga(cluster)
        assert "not yet reconciled by Strimzi" in condition(body, "TopicsReady")["message"]
        assert condition(body, "Ready")["status"] == "False"

        body = await converged(cluster)
        topics = objects(cluster, TOPICS)
        assert sorted(topics) == sorted(TOPIC_NAMES)
        for name, topic in topics.items():
            labels = topic["metadata"]["labels"]
            assert labels["strimzi.io/cluster"] == "sagaline"
            assert labels["sagaline.io/saga"] == "order"
            assert not topic["metadata"].get("ownerReferences")  # retain: they outlive the Saga
            assert topic["spec"]["topicName"] == name
            assert topic["spec"]["partitions"] == 6

        deployments = objects(cluster, DEPLOYMENTS)
        assert sorted(deployments) == WORKLOADS
        for deployment in deployments.values():
            (owner,) = deployment["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"]) == ("Saga", "order", uid)
            assert owner["controller"] is True
            pod = deployment["spec"]["template"]["spec"]
            assert [c["name"] for c in pod["initContainers"]] == ["migrate", "relay"]
            assert pod["initContainers"][1]["restartPolicy"] == "Always"
            assert [c["name"] for c in pod["containers"]] == ["app"]
        assert deployments["payment-service"]["spec"]["replicas"] == 2
        assert sorted(objects(cluster, SERVICES)) == WORKLOADS
        assert sorted(objects(cluster, CONFIG_MAPS)) == WORKLOADS

        status = body["status"]
        assert status["observedGeneration"] == 1
        assert (status["steps"], status["topics"], status["workloads"]) == (
            "payment,stock",
            "11/11",
            "4/4",
        )
        for kind in ("TopicsReady", "WorkloadsReady", "Ready"):
            assert condition(body, kind)["status"] == "True"
            assert condition(body, kind)["observedGeneration"] == 1
        assert "sagas" not in status  # the orchestrator's API does not answer yet: no counts
        await eventually(lambda: posted(cluster, "Normal", "Reconciled"), what="an Event")
        assert_valid(cluster)

        # The counts, once the orchestrator answers (at its Service's name and namespace).
        summary = {"RUNNING": 2, "COMPENSATING": 1, "COMPLETED": 40, "COMPENSATED": 7, "FAILED": 1}
        orchestrator_api[f"get /order-orchestrator/{NAMESPACE}/sagas/summary"] << {
            **summary,
            "STUCK": 2,
            "total": 53,
        }
        counts = await eventually(lambda: saga_status(cluster).get("sagas"), what="saga counts")
        assert counts == {
            "running": 3,
            "completed": 40,
            "compensated": 7,
            "failed": 1,
            "stuck": 2,
            "total": 53,
        }
        assert ready(cluster)
        assert_valid(cluster)

        # Every child was written by server-side apply, as the operator's field manager.
        assert cluster.applies
        assert set(cluster.applies) == {("sagaline-operator", "true")}


async def test_kafka_authentication_gives_every_service_a_user_and_waits_for_them(
    cluster, api: Api, config
):
    kafka = {**order_saga()["spec"]["kafka"], "authentication": {"type": "scram-sha-512"}}
    async with running(config):
        await api.create(SAGAS, order_saga(kafka=kafka))
        await eventually(lambda: len(objects(cluster, USERS)) == 4, what="the users")
        assert sorted(objects(cluster, USERS)) == WORKLOADS

        def waiting_for_users() -> bool:
            mark_topics_ready(cluster)
            mark_deployments_ready(cluster)
            return status_of(cluster, "KafkaUsersReady") == "False" and not ready(cluster)

        await eventually(waiting_for_users, what="Ready=False until Strimzi has the users")

        def with_users() -> dict | None:
            mark_ready(cluster, USERS)
            mark_topics_ready(cluster)
            mark_deployments_ready(cluster)
            return current_and_ready(cluster)

        body = await eventually(with_users, what="Ready with the users")
        assert condition(body, "KafkaUsersReady")["status"] == "True"

        # Authentication off again: the users go (their credentials with them).
        await api.patch(SAGAS, "order", {"spec": {"kafka": {"authentication": None}}})
        await eventually(lambda: not objects(cluster, USERS), what="the users to go")


async def test_a_change_rolls_the_affected_deployments(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        before = objects(cluster, DEPLOYMENTS)

        # More replicas of one step: that Deployment scales, no pod restarts anywhere.
        steps = copy.deepcopy(order_saga()["spec"]["steps"])
        steps[0]["replicas"] = 4
        await api.patch(SAGAS, "order", {"spec": {"steps": steps}})
        await eventually(
            lambda: objects(cluster, DEPLOYMENTS)["payment-service"]["spec"]["replicas"] == 4,
            what="scaling",
        )
        scaled = objects(cluster, DEPLOYMENTS)
        assert {n: pod_hash(d) for n, d in scaled.items()} == {
            n: pod_hash(d) for n, d in before.items()
        }
        assert (
            scaled["stock-service"]["metadata"]["generation"]
            == before["stock-service"]["metadata"]["generation"]
        )
        await eventually(
            lambda: saga_status(cluster)["observedGeneration"] == 2, what="generation 2"
        )
        assert status_of(cluster, "WorkloadsReady") == "False"  # 4 wanted, not yet rolled out
        await converged(cluster)

        # A new timeout and parallel execution: every service reads them, every pod rolls.
        await api.patch(
            SAGAS, "order", {"spec": {"stepTimeoutSeconds": 30, "execution": "parallel"}}
        )
        await eventually(
            lambda: all(
                pod_hash(d) != pod_hash(before[n]) for n, d in objects(cluster, DEPLOYMENTS).items()
            ),
            what="every pod template to change",
        )
        config = objects(cluster, CONFIG_MAPS)["order-orchestrator"]["data"]["saga.yaml"]
        assert "stepTimeoutSeconds: 30" in config and "execution: parallel" in config
        body = await converged(cluster)
        assert body["status"]["observedGeneration"] == 3
        assert_valid(cluster)


async def test_a_deleted_or_edited_child_comes_back(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        await api.delete(DEPLOYMENTS, "stock-service")
        await api.delete(TOPICS, "payment.dlt")
        await api.patch(
            SERVICES, "order-service", {"spec": {"selector": {"sagaline.io/service": "stock"}}}
        )
        await api.patch(TOPICS, "stock", {"spec": {"config": {"retention.ms": 1000}}})

        await eventually(
            lambda: "stock-service" in objects(cluster, DEPLOYMENTS), what="deployment"
        )
        await eventually(lambda: "payment.dlt" in objects(cluster, TOPICS), what="topic")
        await eventually(
            lambda: (
                objects(cluster, SERVICES)["order-service"]["spec"]["selector"][
                    "sagaline.io/service"
                ]
                == "order"
            ),
            what="the service's selector",
        )
        await eventually(
            lambda: (
                objects(cluster, TOPICS)["stock"]["spec"]["config"]["retention.ms"] == 604800000
            ),
            what="the topic's retention",
        )
        await converged(cluster)


async def test_a_removed_step_takes_its_services_and_leaves_its_topics(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        await api.patch(SAGAS, "order", {"spec": {"steps": order_saga()["spec"]["steps"][:1]}})
        await eventually(
            lambda: all(
                "stock-service" not in objects(cluster, kind)
                for kind in (DEPLOYMENTS, SERVICES, CONFIG_MAPS)
            ),
            what="pruning",
        )
        # retain: the stock topics and their data stay, no longer the Saga's.
        await eventually(
            lambda: (
                "sagaline.io/saga"
                not in objects(cluster, TOPICS)["stock.success"]["metadata"]["labels"]
            ),
            what="the stock topics to be let go",
        )
        body = await converged(cluster, topics=11, workloads=3)
        assert body["status"]["topics"] == "7/7"


@pytest.mark.parametrize(
    ("edit", "reason", "says"),
    [
        (lambda s: s["steps"].append({"name": "payment"}), "InvalidSpec", "repeated: payment"),
        (
            lambda s: s["steps"].append({"name": "orchestrator"}),
            "InvalidSpec",
            "may not be named like a service: orchestrator",
        ),
        (lambda s: s["orchestrator"].pop("database"), "InvalidSpec", "missing for: orchestrator"),
    ],
    ids=["duplicate-step", "step-named-orchestrator", "no-database"],
)
async def test_a_spec_the_schema_cannot_refuse_is_refused_with_a_condition(
    cluster, api: Api, config, edit, reason, says
):
    async with running(config):
        document = order_saga()
        edit(document["spec"])
        await api.create(SAGAS, document)
        await eventually(
            lambda: condition(saga(cluster), "Ready").get("reason") == reason, what=reason
        )
        ready_condition = condition(saga(cluster), "Ready")
        assert ready_condition["status"] == "False"
        assert says in ready_condition["message"]
        assert ready_condition["message"].startswith("fix the spec")
        assert saga_status(cluster)["observedGeneration"] == 1
        await eventually(lambda: posted(cluster, "Warning", reason, says), what="a Warning")
        warnings = posted(cluster, "Warning")
        assert objects(cluster, TOPICS) == {} and objects(cluster, DEPLOYMENTS) == {}

        # Fixed, it is applied.
        await api.patch(SAGAS, "order", {"spec": order_saga()["spec"]})
        body = await converged(cluster)
        assert body["status"]["observedGeneration"] == 2
        assert len(posted(cluster, "Warning")) == len(warnings)  # no second Warning


async def test_partitions_only_grow(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        versions = {
            n: t["metadata"]["resourceVersion"] for n, t in objects(cluster, TOPICS).items()
        }
        deployments = {
            n: d["metadata"]["resourceVersion"] for n, d in objects(cluster, DEPLOYMENTS).items()
        }

        kafka = order_saga()["spec"]["kafka"]
        steps = copy.deepcopy(order_saga()["spec"]["steps"])
        steps[1]["replicas"] = 5  # refused along with the rest of the change
        await api.patch(
            SAGAS, "order", {"spec": {"kafka": {**kafka, "partitions": 3}, "steps": steps}}
        )
        await eventually(
            lambda: condition(saga(cluster), "Ready").get("reason") == "PartitionDecrease",
            what="the refusal",
        )
        message = condition(saga(cluster), "Ready")["message"]
        assert "at least 6" in message and "nothing was changed" in message
        await eventually(lambda: posted(cluster, "Warning", "PartitionDecrease"), what="Event")
        # Nothing attempted: a few resync passes later, no topic or Deployment was written.
        await eventually(lambda: passes_since(cluster, "PartitionDecrease") >= 3, what="passes")
        assert {
            n: t["metadata"]["resourceVersion"] for n, t in objects(cluster, TOPICS).items()
        } == versions
        assert {
            n: d["metadata"]["resourceVersion"] for n, d in objects(cluster, DEPLOYMENTS).items()
        } == deployments

        await api.patch(SAGAS, "order", {"spec": {"kafka": {**kafka, "partitions": 8}}})
        await eventually(
            lambda: all(t["spec"]["partitions"] == 8 for t in objects(cluster, TOPICS).values()),
            what="the topics to grow",
        )
        await converged(cluster)
        assert objects(cluster, DEPLOYMENTS)["stock-service"]["spec"]["replicas"] == 5


def passes_since(cluster, reason: str) -> int:
    """Reconciliation passes (GETs of the Saga) since the Event that reported `reason`."""
    saga_path = f"/apis/sagaline.io/v1alpha1/namespaces/{NAMESPACE}/sagas/order"
    requests = list(cluster)
    first = next(
        (i for i, r in enumerate(requests) if r.method == "POST" and reason in str(r.data)),
        None,
    )
    if first is None:
        return 0
    return sum(1 for r in requests[first:] if r.method == "GET" and r.url.path == saga_path)


async def test_a_topic_of_another_saga_is_not_taken(cluster, api: Api, config):
    async with running(config):
        other = {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {"name": "payment", "labels": {"sagaline.io/saga": "billing"}},
            "spec": {"partitions": 3},
        }
        await api.create(TOPICS, other)
        await api.create(SAGAS, order_saga())
        await eventually(
            lambda: condition(saga(cluster), "Ready").get("reason") == "Conflict", what="conflict"
        )
        assert "billing" in condition(saga(cluster), "Ready")["message"]
        assert sorted(objects(cluster, TOPICS)) == ["payment"]  # nothing created
        assert objects(cluster, TOPICS)["payment"]["spec"] == {"partitions": 3}


@pytest.mark.parametrize("policy", ["retain", "delete"])
async def test_deleting_a_saga_follows_its_topic_deletion_policy(cluster, api: Api, config, policy):
    async with running(config):
        created = await api.create(SAGAS, order_saga(topicDeletionPolicy=policy))
        await converged(cluster)
        for topic in objects(cluster, TOPICS).values():
            owners = topic["metadata"].get("ownerReferences") or []
            if policy == "delete":
                assert [o["uid"] for o in owners] == [created["metadata"]["uid"]]
            else:
                assert owners == []
        assert (saga(cluster) or {})["metadata"]["finalizers"] == ["sagaline.io/finalizer"]

        await api.delete(SAGAS, "order")
        await eventually(lambda: saga(cluster) is None, what="the Saga to go")
        assert objects(cluster, DEPLOYMENTS) == {}
        assert objects(cluster, SERVICES) == {}
        assert objects(cluster, CONFIG_MAPS) == {}
        if policy == "retain":
            assert sorted(objects(cluster, TOPICS)) == sorted(TOPIC_NAMES)
            await eventually(lambda: posted(cluster, "Normal", "TopicsRetained"), what="Event")
        else:
            assert objects(cluster, TOPICS) == {}
            await eventually(lambda: posted(cluster, "Normal", "TopicsDeleted"), what="Event")


async def test_a_retained_topic_is_adopted_by_the_next_saga(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        await api.delete(SAGAS, "order")
        await eventually(lambda: saga(cluster) is None, what="the Saga to go")
        uids = {n: t["metadata"]["uid"] for n, t in objects(cluster, TOPICS).items()}
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        assert {n: t["metadata"]["uid"] for n, t in objects(cluster, TOPICS).items()} == uids


async def test_an_operator_restart_in_the_middle(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        # Stop as soon as the first children exist: the pass may be cut anywhere after that.
        await eventually(lambda: objects(cluster, TOPICS), what="the first topics")

    # While no operator runs: the Saga changes, and a child disappears.
    steps = copy.deepcopy(order_saga()["spec"]["steps"])
    steps[0]["replicas"] = 3
    await api.patch(SAGAS, "order", {"spec": {"steps": steps, "maxAttempts": 7}})
    if "payment.success" in objects(cluster, TOPICS):
        await api.delete(TOPICS, "payment.success")

    async with running(config):
        body = await converged(cluster)
        assert body["status"]["observedGeneration"] == 2
        assert objects(cluster, DEPLOYMENTS)["payment-service"]["spec"]["replicas"] == 3
        config_text = objects(cluster, CONFIG_MAPS)["stock-service"]["data"]["saga.yaml"]
        assert "maxAttempts: 7" in config_text
        assert sorted(objects(cluster, TOPICS)) == sorted(TOPIC_NAMES)
        assert_valid(cluster)


async def test_a_topic_strimzi_cannot_reconcile_keeps_the_saga_not_ready(cluster, api: Api, config):
    async with running(config):
        await api.create(SAGAS, order_saga())
        await converged(cluster)
        mark_topics_ready(cluster, ready=False)
        await eventually(lambda: status_of(cluster, "TopicsReady") == "False", what="not ready")
        body = saga(cluster)
        assert "broker unavailable" in condition(body, "TopicsReady")["message"]
        assert condition(body, "Ready")["reason"] == "TopicsNotReady"
        assert saga_status(cluster)["topics"] == "0/11"
