"""What the operator builds for a Saga, checked against the schemas the cluster would apply."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sagaline_operator import manifests
from sagaline_operator.__main__ import write_topics

from sagaline.domain.definition import SagaDefinition, load_definition
from sagaline.settings import Settings
from tests.operator.support import ORDER_YAML, ROOT, STRIMZI_KAFKA_TOPIC, order_saga

K8S_VERSION = "1.30"  # the oldest Kubernetes the manifests target (native sidecars: ≥ 1.29)
NAMESPACE = "shop"


@pytest.fixture(scope="module")
def definition() -> SagaDefinition:
    return load_definition(ORDER_YAML)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def with_spec(**changes) -> SagaDefinition:
    return SagaDefinition.model_validate(order_saga(**changes))


# -- schemas -----------------------------------------------------------------------------------


def test_every_built_in_object_is_valid_for_kubernetes(definition):
    objects = manifests.workloads(definition, NAMESPACE)
    assert sorted({obj["kind"] for obj in objects}) == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
    ]
    # A ConfigMap, a Deployment and a Service per service; a PodDisruptionBudget per service
    # of more than one replica (order.yaml: the initiator and both steps have two).
    assert len(objects) == 3 * 4 + 3
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_sidecar_field_is_checked_by_the_schema(definition):
    """The check is real: before 1.28 (alpha; beta and on by default in 1.29) an init
    container had no restartPolicy, and a strict validation refuses it."""
    deployment = by_kind(manifests.workloads(definition, NAMESPACE), "Deployment")[
        "payment-service"
    ]
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(deployment, "1.27", strict=True)


def test_the_kafka_topics_have_the_fields_strimzi_requires(definition):
    topics = manifests.kafka_topics(definition, namespace=NAMESPACE)
    assert [t["metadata"]["name"] for t in topics] == definition.topics()
    for topic in topics:
        jsonschema.validate(topic, STRIMZI_KAFKA_TOPIC)
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "sagaline"
        assert topic["spec"] == {
            "topicName": topic["metadata"]["name"],
            "partitions": 6,
            "replicas": 3,
            "config": {"min.insync.replicas": 2, "retention.ms": 7 * 24 * 3600 * 1000},
        }


def test_the_topic_schema_check_is_real(definition):
    topic = manifests.kafka_topics(definition)[0]
    broken = copy.deepcopy(topic)
    broken["spec"]["partitions"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, STRIMZI_KAFKA_TOPIC)
    unlabelled = copy.deepcopy(topic)
    del unlabelled["metadata"]["labels"]["strimzi.io/cluster"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(unlabelled, STRIMZI_KAFKA_TOPIC)


@pytest.mark.parametrize(
    ("replicas", "insync", "expected"),
    [(1, None, 1), (2, None, 1), (3, None, 2), (5, None, 2), (5, 3, 3)],
)
def test_min_insync_replicas(replicas, insync, expected):
    kafka = {"replicas": replicas} | ({"minInsyncReplicas": insync} if insync else {})
    topic = manifests.kafka_topics(with_spec(kafka=kafka))[0]
    assert topic["spec"]["config"]["min.insync.replicas"] == expected


def test_min_insync_replicas_above_replicas_is_refused():
    with pytest.raises(ValueError, match="minInsyncReplicas"):
        with_spec(kafka={"replicas": 2, "minInsyncReplicas": 3})


def test_the_topics_follow_the_kafka_spec():
    kafka = {"cluster": "east", "partitions": 12, "replicas": 5, "retentionMs": 3_600_000}
    topic = manifests.kafka_topics(with_spec(kafka=kafka), api_version="kafka.strimzi.io/v1")[0]
    assert topic["apiVersion"] == "kafka.strimzi.io/v1"
    assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "east"
    assert topic["spec"]["partitions"] == 12
    assert topic["spec"]["replicas"] == 5
    assert topic["spec"]["config"]["retention.ms"] == 3_600_000


# -- the pods ----------------------------------------------------------------------------------


def test_each_service_gets_a_config_map_a_deployment_and_a_service(definition):
    objects = manifests.workloads(definition, NAMESPACE)
    names = ["order-orchestrator", "order-service", "payment-service", "stock-service"]
    for kind in ("ConfigMap", "Deployment", "Service"):
        assert sorted(by_kind(objects, kind)) == names
    replicas = {n: d["spec"]["replicas"] for n, d in by_kind(objects, "Deployment").items()}
    assert replicas == {n: 1 if n == "order-orchestrator" else 2 for n in names}


def test_the_pod_migrates_then_starts_the_relay_sidecar_then_the_app(definition):
    deployment = by_kind(manifests.workloads(definition, NAMESPACE), "Deployment")[
        "payment-service"
    ]
    pod = deployment["spec"]["template"]["spec"]
    migrate, relay = pod["initContainers"]
    (app,) = pod["containers"]
    assert migrate["command"] == ["sagaline", "migrate", "payment"]
    assert "restartPolicy" not in migrate  # a regular init container: runs to completion first
    assert relay["command"] == ["sagaline", "relay", "payment"]
    assert relay["restartPolicy"] == "Always"  # a native sidecar, running beside the app
    assert app["command"][:3] == ["sagaline", "serve", "payment"]
    assert {c["image"] for c in (migrate, relay, app)} == {"sagaline:dev"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert app["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert app["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_the_pod_meets_the_restricted_pod_security_standard(definition):
    for deployment in by_kind(manifests.workloads(definition, NAMESPACE), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["initContainers"] + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
        assert "hostNetwork" not in pod and "hostPID" not in pod


def test_every_container_gets_what_the_services_settings_read(definition, monkeypatch):
    deployment = by_kind(manifests.workloads(definition, NAMESPACE), "Deployment")["order-service"]
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["initContainers"] + pod["containers"]:
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "order-db",
            "key": "uri",
        }
        assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"] == "sagaline-kafka-bootstrap:9092"
        assert env["SAGA_FILE"]["value"] == "/etc/sagaline/saga.yaml"
        assert env["SAGALINE_CREATE_TOPICS"]["value"] == "false"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["saga"] == "/etc/sagaline"
    # The names are the ones the image reads: a Settings built from this environment has them.
    values = {
        e["name"]: e.get("value", "postgresql://app:pw@db:5432/app")
        for e in pod["containers"][0]["env"]
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url.get_secret_value() == "postgresql://app:pw@db:5432/app"
    assert settings.kafka_bootstrap_servers == "sagaline-kafka-bootstrap:9092"
    assert settings.saga_file == Path("/etc/sagaline/saga.yaml")
    assert settings.create_topics is False


def test_the_secret_key_can_be_chosen():
    steps = [{"name": "payment", "database": {"secretName": "pay", "secretKey": "DATABASE_URL"}}]
    definition = with_spec(steps=steps)
    deployment = by_kind(manifests.workloads(definition, NAMESPACE), "Deployment")[
        "payment-service"
    ]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "pay",
        "key": "DATABASE_URL",
    }


def test_the_service_selects_the_pods_of_its_deployment(definition):
    objects = manifests.workloads(definition, NAMESPACE)
    deployments, services = by_kind(objects, "Deployment"), by_kind(objects, "Service")
    for name, service in services.items():
        template_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= template_labels.items()
        assert deployments[name]["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_config_map_is_the_saga_the_services_load(definition):
    config = by_kind(manifests.workloads(definition, NAMESPACE), "ConfigMap")["stock-service"]
    loaded = SagaDefinition.model_validate(yaml.safe_load(config["data"]["saga.yaml"]))
    assert loaded.name == definition.name
    assert loaded.topics() == definition.topics()
    assert loaded.spec.execution == definition.spec.execution
    assert loaded.spec.step_timeout_seconds == definition.spec.step_timeout_seconds
    assert loaded.spec.max_attempts == definition.spec.max_attempts
    assert loaded.spec.initiator.name == "order"


def pod_hashes(definition: SagaDefinition) -> dict[str, str]:
    return {
        name: d["spec"]["template"]["metadata"]["annotations"][manifests.CONFIG_HASH]
        for name, d in by_kind(manifests.workloads(definition, NAMESPACE), "Deployment").items()
    }


def test_a_change_of_behaviour_rolls_the_pods_and_scaling_does_not(definition):
    before = pod_hashes(definition)
    assert pod_hashes(with_spec(stepTimeoutSeconds=30)) != before
    parallel = pod_hashes(with_spec(execution="parallel"))
    assert all(parallel[name] != before[name] for name in before)
    scaled = order_saga()
    scaled["spec"]["steps"][0]["replicas"] = 5
    scaled["spec"]["kafka"]["partitions"] = 12
    assert pod_hashes(SagaDefinition.model_validate(scaled)) == before


# -- k8s/topics and the operator's own manifests -----------------------------------------------


def test_k8s_topics_are_what_the_builder_makes(tmp_path):
    """`python -m sagaline_operator render-topics` regenerates them; they must not drift."""
    written = write_topics(ORDER_YAML, tmp_path, "kafka.strimzi.io/v1beta2")
    committed = ROOT / "k8s" / "topics"
    assert sorted(p.name for p in committed.glob("*.yaml")) == sorted(p.name for p in written)
    for path in written:
        assert (committed / path.name).read_text() == path.read_text(), path.name
        jsonschema.validate(yaml.safe_load(path.read_text()), STRIMZI_KAFKA_TOPIC)


def test_render_topics_removes_the_files_of_a_removed_step(tmp_path):
    (tmp_path / "shipping.yaml").write_text("stale")
    write_topics(ORDER_YAML, tmp_path, "kafka.strimzi.io/v1beta2")
    assert not (tmp_path / "shipping.yaml").exists()
    assert len(list(tmp_path.glob("*.yaml"))) == 11


# -- a step's own image, command, arguments and timing -----------------------------------------

TEAM_IMAGE = "registry.example/payments/step:1.4"


def team_step_saga() -> SagaDefinition:
    document = order_saga(compensationMaxAttempts=30)
    document["spec"]["steps"][0].update(
        image=TEAM_IMAGE,
        command=["payments-step"],
        args=["--port", "8080"],
        timeoutSeconds=2.5,
        maxAttempts=8,
    )
    document["spec"]["steps"][1].update(compensationMaxAttempts=50, args=["--log-level", "debug"])
    return SagaDefinition.model_validate(document)


def test_a_step_in_its_own_image_runs_its_command_relays_and_migrates_with_it():
    objects = manifests.workloads(team_step_saga(), NAMESPACE)
    pod = by_kind(objects, "Deployment")["payment-service"]["spec"]["template"]["spec"]
    migrate, relay = pod["initContainers"]
    (app,) = pod["containers"]
    assert {c["image"] for c in (migrate, relay, app)} == {TEAM_IMAGE}
    assert (app["command"], app["args"]) == (["payments-step"], ["--port", "8080"])
    # The relay and the migrations are sagaline's, run from the step's image (its migrations).
    assert migrate["command"] == ["sagaline", "migrate", "payment"]
    assert relay["command"] == ["sagaline", "relay", "payment"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_step_without_an_image_or_command_keeps_the_sagas():
    deployments = by_kind(manifests.workloads(team_step_saga(), NAMESPACE), "Deployment")
    stock = deployments["stock-service"]["spec"]["template"]["spec"]
    (app,) = stock["containers"]
    assert {c["image"] for c in stock["initContainers"] + stock["containers"]} == {"sagaline:dev"}
    assert app["command"] == ["sagaline", "serve", "stock", "--host", "0.0.0.0", "--port", "8080"]
    assert app["args"] == ["--log-level", "debug"]  # after the default command
    for name in ("order-orchestrator", "order-service"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {"sagaline:dev"}
        assert "args" not in pod["containers"][0]


SHIPPING_DECLARATION = "shipping_team.plugin:SHIPPING"


def declared_step_saga() -> SagaDefinition:
    document = order_saga()
    document["spec"]["steps"].append(
        {
            "name": "shipping",
            "declaration": SHIPPING_DECLARATION,
            "database": {"secretName": "shipping-db"},
        }
    )
    return SagaDefinition.model_validate(document)


def steps_env(container: dict) -> list[dict]:
    return [variable for variable in container["env"] if variable["name"] == "SAGALINE_STEPS"]


def test_a_step_naming_its_declaration_finds_it_in_every_container_of_its_pod():
    objects = manifests.workloads(declared_step_saga(), NAMESPACE)
    deployments = by_kind(objects, "Deployment")
    pod = deployments["shipping-service"]["spec"]["template"]["spec"]
    migrate, relay = pod["initContainers"]
    (app,) = pod["containers"]
    for container in (migrate, relay, app):
        assert steps_env(container) == [{"name": "SAGALINE_STEPS", "value": SHIPPING_DECLARATION}]
    # The others are found by their entry points: no SAGALINE_STEPS in their pods.
    for name in ("order-orchestrator", "order-service", "payment-service", "stock-service"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert not any(steps_env(c) for c in pod["initContainers"] + pod["containers"]), name
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_steps_declaration_rolls_that_step_only():
    definition = declared_step_saga()
    document = definition.model_dump(by_alias=True, exclude_none=True)
    document["spec"]["steps"][2]["declaration"] = "shipping_team.plugin:SHIPPING_V2"
    changed = SagaDefinition.model_validate(document)
    assert pod_hashes(changed) == pod_hashes(definition)  # not in the services' ConfigMap
    before, after = templates(definition), templates(changed)
    assert {name for name in before if before[name] != after[name]} == {"shipping-service"}


def test_the_runtime_document_carries_the_compensation_attempts_and_each_steps_timing():
    definition = team_step_saga()
    document = manifests.runtime_document(definition)
    assert document["spec"]["compensationMaxAttempts"] == 30
    assert document["spec"]["steps"] == [
        {"name": "payment", "timeoutSeconds": 2.5, "maxAttempts": 8},
        {"name": "stock", "compensationMaxAttempts": 50},
    ]
    # What a service loads from its ConfigMap re-sends as the Saga says, step by step.
    config = by_kind(manifests.workloads(definition, NAMESPACE), "ConfigMap")["order-orchestrator"]
    loaded = SagaDefinition.model_validate(yaml.safe_load(config["data"]["saga.yaml"]))
    assert loaded.spec.compensation_max_attempts == 30
    assert loaded.spec.timings() == definition.spec.timings()
    assert loaded.resend_horizon_s() == definition.resend_horizon_s()


def templates(definition: SagaDefinition) -> dict[str, dict]:
    deployments = by_kind(manifests.workloads(definition, NAMESPACE), "Deployment")
    return {name: d["spec"]["template"] for name, d in deployments.items()}


def test_a_steps_image_rolls_that_step_only_and_its_timing_rolls_every_service(definition):
    before = pod_hashes(definition)
    document = order_saga()
    document["spec"]["steps"][0]["image"] = TEAM_IMAGE
    image_changed = SagaDefinition.model_validate(document)
    assert pod_hashes(image_changed) == before
    rolled = {
        name
        for name, template in templates(image_changed).items()
        if template != templates(definition)[name]
    }
    assert rolled == {"payment-service"}
    document["spec"]["steps"][0]["maxAttempts"] = 8
    changed = pod_hashes(SagaDefinition.model_validate(document))
    assert all(changed[name] != before[name] for name in before)
    assert pod_hashes(with_spec(compensationMaxAttempts=40)) != before


def test_a_saga_without_an_initiator_gets_no_initiator_service():
    definition = with_spec(initiator={"enabled": False})
    objects = manifests.workloads(definition, NAMESPACE)
    assert sorted(by_kind(objects, "Deployment")) == [
        "order-orchestrator",
        "payment-service",
        "stock-service",
    ]
    config = by_kind(objects, "ConfigMap")["order-orchestrator"]
    loaded = SagaDefinition.model_validate(yaml.safe_load(config["data"]["saga.yaml"]))
    assert loaded.spec.initiator_name is None


def test_the_config_map_of_a_saga_with_an_initiator_is_unchanged(definition):
    """`enabled` is written only when false: a running Saga's pods do not roll for it."""
    config = by_kind(manifests.workloads(definition, NAMESPACE), "ConfigMap")["order-service"]
    assert yaml.safe_load(config["data"]["saga.yaml"])["spec"]["initiator"] == {"name": "order"}
