"""Production-grade pods and least-privilege Kafka access: what the operator builds for them."""

from __future__ import annotations

import pytest
from sagaline_operator import manifests
from sagaline_operator.access import service_access

from sagaline.domain.definition import SagaDefinition, consumer_group
from sagaline.registration import find
from sagaline.settings import Settings
from tests.operator.support import order_saga

NAMESPACE = "shop"


def definition_with(**changes) -> SagaDefinition:
    return SagaDefinition.model_validate(order_saga(**changes))


def deployment(definition: SagaDefinition, name: str) -> dict:
    objects = manifests.workloads(definition, NAMESPACE)
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def containers(pod_owner: dict) -> dict[str, dict]:
    spec = pod_owner["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}


def env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- resources ---------------------------------------------------------------------------------


def test_every_container_has_requests_and_a_memory_limit_by_default():
    pods = containers(deployment(definition_with(), "payment-service"))
    assert pods["app"]["resources"] == manifests.APP_RESOURCES
    assert pods["relay"]["resources"] == manifests.RELAY_RESOURCES
    assert pods["migrate"]["resources"] == manifests.RELAY_RESOURCES


def test_the_spec_overrides_resources_quantity_by_quantity():
    steps = order_saga()["spec"]["steps"]
    steps[0]["resources"] = {"requests": {"cpu": 1}, "limits": {"cpu": "2", "memory": "1Gi"}}
    steps[0]["relayResources"] = {"limits": {"memory": "128Mi"}}
    pods = containers(deployment(definition_with(steps=steps), "payment-service"))
    assert pods["app"]["resources"] == {
        "requests": {"cpu": "1", "memory": "192Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert pods["relay"]["resources"]["limits"] == {"memory": "128Mi"}
    other = containers(deployment(definition_with(steps=steps), "stock-service"))
    assert other["app"]["resources"] == manifests.APP_RESOURCES


def test_a_quantity_that_is_not_one_is_refused():
    steps = order_saga()["spec"]["steps"]
    steps[0]["resources"] = {"requests": {"memory": "lots"}}
    with pytest.raises(ValueError, match="memory"):
        definition_with(steps=steps)


# -- the relay's port, the API token, disruption budgets ---------------------------------------


def test_the_relay_serves_metrics_on_its_own_port_with_probes(monkeypatch):
    relay = containers(deployment(definition_with(), "order-orchestrator"))["relay"]
    assert relay["ports"] == [
        {"name": "metrics", "containerPort": manifests.RELAY_METRICS_PORT, "protocol": "TCP"}
    ]
    assert env(relay)["SAGALINE_RELAY_METRICS_PORT"] == str(manifests.RELAY_METRICS_PORT)
    for probe in ("startupProbe", "livenessProbe"):
        assert relay[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert manifests.RELAY_METRICS_PORT != manifests.HTTP_PORT
    # Settings reads the variable the pod sets.
    monkeypatch.setenv("SAGALINE_RELAY_METRICS_PORT", env(relay)["SAGALINE_RELAY_METRICS_PORT"])
    assert Settings().relay_metrics_port == manifests.RELAY_METRICS_PORT


def test_the_api_token_comes_from_the_secret_the_spec_names_and_only_to_the_app():
    definition = definition_with(apiToken={"secretName": "shop-api"})
    pods = containers(deployment(definition, "order-service"))
    assert env(pods["app"])["SAGALINE_API_TOKEN"] == {
        "secretKeyRef": {"name": "shop-api", "key": "token"}
    }
    assert "SAGALINE_API_TOKEN" not in env(pods["relay"])
    assert "SAGALINE_API_TOKEN" not in env(
        containers(deployment(definition_with(), "order-service"))["app"]
    )


def test_tracing_sends_every_process_spans_to_the_collector_the_spec_names():
    collector = "http://otel-collector.observability:4318"
    pods = containers(
        deployment(definition_with(tracing={"otlpEndpoint": collector}), "payment-service")
    )
    for name, service_name in (("app", "payment-service"), ("relay", "payment-service-relay")):
        variables = env(pods[name])
        assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == collector, name
        assert variables["OTEL_TRACES_EXPORTER"] == "otlp"
        assert variables["OTEL_SERVICE_NAME"] == service_name
    untraced = containers(deployment(definition_with(), "payment-service"))
    assert not any(n.startswith("OTEL_") for c in untraced.values() for n in env(c))


@pytest.mark.parametrize("endpoint", ["collector:4318", "", "http://a b"])
def test_a_tracing_endpoint_must_be_an_http_url(endpoint: str):
    with pytest.raises(ValueError, match="otlpEndpoint"):
        definition_with(tracing={"otlpEndpoint": endpoint})


def test_a_disruption_budget_only_for_more_than_one_replica():
    budgets = {
        o["metadata"]["name"]: o
        for o in manifests.workloads(definition_with(), NAMESPACE)
        if o["kind"] == "PodDisruptionBudget"
    }
    # order.yaml: the orchestrator has one replica, the others two.
    assert sorted(budgets) == ["order-service", "payment-service", "stock-service"]
    budget = budgets["payment-service"]
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {"sagaline.io/saga": "order", "sagaline.io/service": "payment"}
        },
    }


# -- Kafka TLS and SASL ------------------------------------------------------------------------


def test_plaintext_kafka_needs_no_settings():
    app = containers(deployment(definition_with(), "payment-service"))["app"]
    assert not [name for name in env(app) if name.startswith("KAFKA_") and "BOOTSTRAP" not in name]
    assert manifests.kafka_users(definition_with()) == []


def test_scram_over_tls_reads_the_ca_and_the_users_password_from_secrets(monkeypatch):
    kafka = {
        **order_saga()["spec"]["kafka"],
        "tls": {"caSecretName": "sagaline-cluster-ca-cert"},
        "authentication": {"type": "scram-sha-512"},
    }
    owner = deployment(definition_with(kafka=kafka), "payment-service")
    for container in containers(owner).values():  # migrations and the relay connect too
        variables = env(container)
        assert variables["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert variables["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert variables["KAFKA_SASL_USERNAME"] == "payment-service"
        assert variables["KAFKA_SASL_PASSWORD"] == {
            "secretKeyRef": {"name": "payment-service", "key": "password"}
        }
        assert variables["KAFKA_SSL_CAFILE"] == f"{manifests.KAFKA_CA_DIR}/ca.crt"
        assert {"name": "kafka-ca", "mountPath": manifests.KAFKA_CA_DIR, "readOnly": True} in (
            container["volumeMounts"]
        )
    volumes = {v["name"]: v for v in owner["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-ca"]["secret"] == {
        "secretName": "sagaline-cluster-ca-cert",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    # What the services read accepts it (the password comes from the Secret in the pod).
    for name, value in env(containers(owner)["app"]).items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-secret")
    security = Settings().kafka_security()
    assert (security.protocol, security.sasl_username) == ("SASL_SSL", "payment-service")


def test_client_certificates_come_from_the_users_secret():
    kafka = {
        **order_saga()["spec"]["kafka"],
        "tls": {"caSecretName": "ca", "caSecretKey": "root.pem"},
        "authentication": {"type": "tls"},
    }
    owner = deployment(definition_with(kafka=kafka), "stock-service")
    variables = env(containers(owner)["app"])
    assert variables["KAFKA_SECURITY_PROTOCOL"] == "SSL"
    assert variables["KAFKA_SSL_CERTFILE"] == f"{manifests.KAFKA_USER_DIR}/user.crt"
    assert "KAFKA_SASL_USERNAME" not in variables
    volumes = {v["name"]: v for v in owner["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-user"]["secret"]["secretName"] == "stock-service"
    assert volumes["kafka-ca"]["secret"]["items"] == [{"key": "root.pem", "path": "ca.crt"}]


def test_client_certificates_without_tls_are_refused():
    kafka = {**order_saga()["spec"]["kafka"], "authentication": {"type": "tls"}}
    with pytest.raises(ValueError, match=r"kafka\.tls"):
        definition_with(kafka=kafka)


# -- least privilege ---------------------------------------------------------------------------


def allowed(users: list[dict], user: str, operation: str, kind: str, name: str) -> bool:
    """Strimzi's simple authorization, for literal rules: is the operation granted?"""
    spec = next(u["spec"] for u in users if u["metadata"]["name"] == user)
    return any(
        rule["resource"] == {"type": kind, "name": name, "patternType": "literal"}
        and operation in rule["operations"]
        for rule in spec["authorization"]["acls"]
    )


@pytest.fixture
def users() -> list[dict]:
    kafka = {**order_saga()["spec"]["kafka"], "authentication": {"type": "scram-sha-512"}}
    return manifests.kafka_users(definition_with(kafka=kafka), namespace=NAMESPACE)


def test_one_kafka_user_per_service_with_simple_authorization(users):
    names = [u["metadata"]["name"] for u in users]
    assert names == ["order-orchestrator", "order-service", "payment-service", "stock-service"]
    for user in users:
        assert user["kind"] == "KafkaUser"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "sagaline"
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"


def test_only_the_orchestrator_may_write_commands_and_compensations(users):
    definition = definition_with()
    for step in definition.step_names:
        for topic in (step, f"{step}.compensation"):
            writers = [
                u["metadata"]["name"]
                for u in users
                if allowed(users, u["metadata"]["name"], "Write", "topic", topic)
            ]
            assert writers == ["order-orchestrator"], topic


def test_a_step_writes_only_its_own_answers(users):
    assert allowed(users, "payment-service", "Write", "topic", "payment.success")
    assert allowed(users, "payment-service", "Write", "topic", "payment.dlt")
    for topic in ("stock.success", "orchestrator", "orchestrator.response", "payment"):
        assert not allowed(users, "payment-service", "Write", "topic", topic), topic
    assert not allowed(users, "order-service", "Write", "topic", "orchestrator.response")


@pytest.mark.parametrize("service", ["orchestrator", "order", "payment", "stock"])
def test_every_service_may_read_what_its_consumer_subscribes_to_and_no_more(users, service):
    """Held against the real handlers' subscriptions, so a new topic cannot be forgotten."""
    definition = definition_with()
    handler = find(service).assemble(definition, Settings()).handler
    unit = next(u for u in manifests.units(definition) if u.service == service)
    readable = {
        topic for topic in definition.topics() if allowed(users, unit.name, "Read", "topic", topic)
    }
    assert readable == set(handler.topics)
    assert allowed(users, unit.name, "Read", "group", consumer_group("order", service))
    assert service_access(definition, service, unit.role).group == consumer_group("order", service)
