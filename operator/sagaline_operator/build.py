"""What a Saga becomes: its KafkaTopics and, per service, a ConfigMap, a Deployment and a Service.

Pure functions of the parsed `SagaDefinition` (the model the services load): the operator
applies what they return, `render-topics` writes the KafkaTopics to `k8s/topics/`, and the tests
validate them against the schemas. Nothing here talks to Kubernetes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from sagaline.domain.definition import Resources, SagaDefinition, ServiceSpec
from sagaline_operator.access import service_access, simple_acls
from sagaline_operator.config import GROUP, VERSION

Body = dict[str, Any]
Role = Literal["orchestrator", "initiator", "step"]

HTTP_PORT = 8080
RELAY_METRICS_PORT = 9181  # the relay sidecar's /metrics and /healthz
SAGA_DIR = "/etc/sagaline"
SAGA_KEY = "saga.yaml"
KAFKA_CA_DIR = "/etc/sagaline/kafka-ca"
KAFKA_USER_DIR = "/etc/sagaline/kafka-user"
RUN_AS = 10001  # the image's non-root user (numeric, so runAsNonRoot can be verified)

SAGA_LABEL = f"{GROUP}/saga"
SERVICE_LABEL = f"{GROUP}/service"
CONFIG_HASH = f"{GROUP}/config-hash"
STRIMZI_CLUSTER = "strimzi.io/cluster"
MANAGED_BY = "sagaline-operator"

# Requests and limits when the spec says none: what one service and one relay need at a few
# hundred sagas per second. No CPU limit by default (throttling a relay delays every saga).
APP_RESOURCES: Body = {
    "requests": {"cpu": "100m", "memory": "192Mi"},
    "limits": {"memory": "512Mi"},
}
RELAY_RESOURCES: Body = {
    "requests": {"cpu": "50m", "memory": "96Mi"},
    "limits": {"memory": "256Mi"},
}


@dataclass(frozen=True)
class Unit:
    """One service of a saga: the orchestrator, the initiator or a step."""

    saga: str
    service: str  # what `sagaline serve|relay|migrate <service>` runs
    role: Role
    spec: ServiceSpec

    @property
    def name(self) -> str:
        """Its Deployment, Service and ConfigMap: `order-orchestrator`, `payment-service`."""
        return (
            orchestrator_name(self.saga)
            if self.role == "orchestrator"
            else f"{self.service}-service"
        )


def orchestrator_name(saga: str) -> str:
    return f"{saga}-orchestrator"


def units(definition: SagaDefinition) -> list[Unit]:
    spec = definition.spec
    name = definition.name
    return [
        Unit(name, "orchestrator", "orchestrator", spec.orchestrator),
        Unit(name, spec.initiator.name, "initiator", spec.initiator),
        *(Unit(name, step.name, "step", step) for step in spec.steps),
    ]


def missing_databases(definition: SagaDefinition) -> list[str]:
    """Services without `database.secretName`: on a cluster every service needs its database."""
    return [unit.service for unit in units(definition) if unit.spec.database is None]


# -- metadata ----------------------------------------------------------------------------------


def saga_labels(saga: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "sagaline",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SAGA_LABEL: saga,
    }


def selector(unit: Unit) -> dict[str, str]:
    return {SAGA_LABEL: unit.saga, SERVICE_LABEL: unit.service}


def unit_labels(unit: Unit) -> dict[str, str]:
    return {
        **saga_labels(unit.saga),
        "app.kubernetes.io/name": unit.service,
        "app.kubernetes.io/instance": unit.name,
        "app.kubernetes.io/component": unit.role,
        SERVICE_LABEL: unit.service,
    }


def owner_reference(saga: Body) -> Body:
    """A controller reference to the Saga: the garbage collector deletes the child with it."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Saga",
        "name": saga["metadata"]["name"],
        "uid": saga["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, namespace: str | None, labels: dict[str, str]) -> Body:
    metadata: Body = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


# -- topics ------------------------------------------------------------------------------------


def kafka_topics(
    definition: SagaDefinition,
    *,
    api_version: str = "kafka.strimzi.io/v1beta2",
    namespace: str | None = None,
) -> list[Body]:
    """The eleven Strimzi KafkaTopics (for two steps), named like the topics they hold."""
    kafka = definition.spec.kafka
    labels = {**saga_labels(definition.name), STRIMZI_CLUSTER: kafka.cluster}
    return [
        {
            "apiVersion": api_version,
            "kind": "KafkaTopic",
            "metadata": _metadata(topic, namespace, dict(labels)),
            "spec": {
                "topicName": topic,
                "partitions": kafka.partitions,
                "replicas": kafka.replicas,
                "config": {
                    "min.insync.replicas": kafka.effective_min_insync_replicas,
                    "retention.ms": kafka.retention_ms,
                },
            },
        }
        for topic in definition.topics()
    ]


def render_topics(definition: SagaDefinition, api_version: str) -> dict[str, str]:
    """`k8s/topics/`: one YAML file per KafkaTopic, by file name."""
    header = f"# Generated from the Saga {definition.name!r} by `python -m sagaline_operator "
    header += "render-topics`: do not edit.\n"
    return {
        f"{topic['metadata']['name']}.yaml": header + yaml.safe_dump(topic, sort_keys=False)
        for topic in kafka_topics(definition, api_version=api_version)
    }


def kafka_users(
    definition: SagaDefinition,
    *,
    api_version: str = "kafka.strimzi.io/v1beta2",
    namespace: str | None = None,
) -> list[Body]:
    """Per service a Strimzi KafkaUser with least-privilege ACLs, when the spec asks for
    authentication; Strimzi's User Operator writes its credentials to a Secret of its name."""
    kafka = definition.spec.kafka
    if kafka.authentication is None:
        return []
    users = []
    for unit in units(definition):
        access = service_access(definition, unit.service, unit.role)
        labels = {**unit_labels(unit), STRIMZI_CLUSTER: kafka.cluster}
        users.append(
            {
                "apiVersion": api_version,
                "kind": "KafkaUser",
                "metadata": _metadata(unit.name, namespace, labels),
                "spec": {
                    "authentication": {"type": kafka.authentication.type},
                    "authorization": {"type": "simple", "acls": simple_acls(access)},
                },
            }
        )
    return users


# -- services ----------------------------------------------------------------------------------


def runtime_document(definition: SagaDefinition) -> Body:
    """The saga definition the services read: what changes their behaviour, nothing more.

    Replicas, images, databases and the topics' layout stay out, so that scaling a service or
    growing the topics does not restart every pod.
    """
    spec = definition.spec
    return {
        "apiVersion": definition.api_version,
        "kind": definition.kind,
        "metadata": {"name": definition.name},
        "spec": {
            "execution": spec.execution.value,
            "stepTimeoutSeconds": spec.step_timeout_seconds,
            "maxAttempts": spec.max_attempts,
            "initiator": {"name": spec.initiator.name},
            "steps": [{"name": name} for name in definition.step_names],
        },
    }


def config_map(unit: Unit, definition: SagaDefinition, namespace: str | None) -> Body:
    text = yaml.safe_dump(runtime_document(definition), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(unit.name, namespace, unit_labels(unit)),
        "data": {SAGA_KEY: text},
    }


def config_hash(config: Body) -> str:
    """Changes with the ConfigMap's data: in the pod template, it rolls the Deployment."""
    return hashlib.sha256(json.dumps(config["data"], sort_keys=True).encode()).hexdigest()[:16]


def _secret_env(name: str, secret: str, key: str) -> Body:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(unit: Unit, definition: SagaDefinition) -> list[Body]:
    """What every container of the service's pod reads: its database, Kafka, the saga."""
    database = unit.spec.database
    if database is None:
        raise ValueError(f"{unit.service}: database.secretName is required on Kubernetes")
    return [
        _secret_env("DATABASE_URL", database.secret_name, database.secret_key),
        {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": definition.spec.kafka.bootstrap_servers},
        *_kafka_security_env(unit, definition),
        {"name": "SAGA_FILE", "value": f"{SAGA_DIR}/{SAGA_KEY}"},
        {"name": "SAGALINE_CREATE_TOPICS", "value": "false"},  # Strimzi owns the topics
    ]


def _tracing_env(definition: SagaDefinition, service_name: str) -> list[Body]:
    """The standard OpenTelemetry variables (sagaline/telemetry/tracing.py reads them)."""
    tracing = definition.spec.tracing
    if tracing is None:
        return []
    return [
        {"name": "OTEL_TRACES_EXPORTER", "value": "otlp"},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": tracing.otlp_endpoint},
        {"name": "OTEL_SERVICE_NAME", "value": service_name},
    ]


def _kafka_security_env(unit: Unit, definition: SagaDefinition) -> list[Body]:
    """TLS and SASL settings (sagaline/settings.py reads them): the CA from the Secret
    the spec names, the credentials from the Secret Strimzi writes for the service's user."""
    kafka = definition.spec.kafka
    authentication = kafka.authentication.type if kafka.authentication else None
    tls, sasl = kafka.tls is not None, authentication == "scram-sha-512"
    if not (tls or sasl):
        return []  # PLAINTEXT, the clients' default
    protocol = ("SASL_SSL" if tls else "SASL_PLAINTEXT") if sasl else "SSL"
    env: list[Body] = [{"name": "KAFKA_SECURITY_PROTOCOL", "value": protocol}]
    if kafka.tls is not None:
        env.append({"name": "KAFKA_SSL_CAFILE", "value": f"{KAFKA_CA_DIR}/ca.crt"})
    if sasl:
        env += [
            {"name": "KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
            {"name": "KAFKA_SASL_USERNAME", "value": unit.name},
            _secret_env("KAFKA_SASL_PASSWORD", unit.name, "password"),
        ]
    if authentication == "tls":
        env += [
            {"name": "KAFKA_SSL_CERTFILE", "value": f"{KAFKA_USER_DIR}/user.crt"},
            {"name": "KAFKA_SSL_KEYFILE", "value": f"{KAFKA_USER_DIR}/user.key"},
        ]
    return env


def _kafka_volumes(unit: Unit, definition: SagaDefinition) -> list[tuple[Body, Body]]:
    """(volume, mount) pairs of the Kafka CA and of a client certificate."""
    kafka = definition.spec.kafka
    pairs = []
    if kafka.tls is not None:
        items = [{"key": kafka.tls.ca_secret_key, "path": "ca.crt"}]
        secret = {"secretName": kafka.tls.ca_secret_name, "items": items}
        pairs.append(
            (
                {"name": "kafka-ca", "secret": secret},
                {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
            )
        )
    if kafka.authentication is not None and kafka.authentication.type == "tls":
        items = [{"key": key, "path": key} for key in ("user.crt", "user.key")]
        pairs.append(
            (
                {"name": "kafka-user", "secret": {"secretName": unit.name, "items": items}},
                {"name": "kafka-user", "mountPath": KAFKA_USER_DIR, "readOnly": True},
            )
        )
    return pairs


def resources(spec: Resources | None, defaults: Body) -> Body:
    """The defaults, overridden quantity by quantity by what the spec sets."""
    merged: Body = {section: dict(values) for section, values in defaults.items()}
    if spec is not None:
        for section in ("requests", "limits"):
            quantities = getattr(spec, section)
            if quantities is not None:
                merged.setdefault(section, {}).update(quantities.model_dump(exclude_none=True))
    return merged


CONTAINER_SECURITY: Body = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY: Body = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
MOUNTS: list[Body] = [
    {"name": "saga", "mountPath": SAGA_DIR, "readOnly": True},
    {"name": "tmp", "mountPath": "/tmp"},
]


def _container(
    name: str, command: list[str], env: list[Body], image: str, mounts: list[Body]
) -> Body:
    return {
        "name": name,
        "image": image,
        "command": command,
        "env": env,
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }


def _probe(path: str, port: str, period: int, timeout: int, failures: int) -> Body:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def deployment(unit: Unit, definition: SagaDefinition, config: Body, namespace: str | None) -> Body:
    """The service's pod: migrations (init), the outbox relay (native sidecar), the app."""
    spec = definition.spec
    image = spec.image
    env = _env(unit, definition)
    kafka_volumes = _kafka_volumes(unit, definition)
    mounts = [*MOUNTS, *(mount for _, mount in kafka_volumes)]
    relay_resources = resources(unit.spec.relay_resources, RELAY_RESOURCES)

    migrate = _container("migrate", ["sagaline", "migrate", unit.service], env, image, mounts)
    migrate["resources"] = relay_resources

    relay_env = [
        *env,
        {"name": "SAGALINE_RELAY_METRICS_PORT", "value": str(RELAY_METRICS_PORT)},
        *_tracing_env(definition, f"{unit.name}-relay"),
    ]
    relay = _container("relay", ["sagaline", "relay", unit.service], relay_env, image, mounts)
    relay["restartPolicy"] = "Always"  # a native sidecar: started after `migrate`, before the app
    relay["ports"] = [{"name": "metrics", "containerPort": RELAY_METRICS_PORT, "protocol": "TCP"}]
    relay["startupProbe"] = _probe("/healthz", "metrics", period=2, timeout=2, failures=30)
    relay["livenessProbe"] = _probe("/healthz", "metrics", period=10, timeout=2, failures=3)
    relay["resources"] = relay_resources

    app_env = [*env, *_tracing_env(definition, unit.name)]
    if spec.api_token is not None:
        token = spec.api_token
        app_env.append(_secret_env("SAGALINE_API_TOKEN", token.secret_name, token.secret_key))
    serve = ["sagaline", "serve", unit.service, "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    app = _container("app", serve, app_env, image, mounts)
    app["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    app["startupProbe"] = _probe("/healthz", "http", period=2, timeout=2, failures=30)
    app["livenessProbe"] = _probe("/healthz", "http", period=10, timeout=2, failures=3)
    app["readinessProbe"] = _probe("/readyz", "http", period=5, timeout=3, failures=3)
    app["resources"] = resources(unit.spec.resources, APP_RESOURCES)

    labels = unit_labels(unit)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(unit.name, namespace, labels),
        "spec": {
            "replicas": unit.spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(unit)},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        CONFIG_HASH: config_hash(config),
                        # Prometheus' conventional scrape annotations: the relay's port.
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(RELAY_METRICS_PORT),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,  # the services never call Kubernetes
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "initContainers": [migrate, relay],
                    "containers": [app],
                    "volumes": [
                        {"name": "saga", "configMap": {"name": config["metadata"]["name"]}},
                        {"name": "tmp", "emptyDir": {}},
                        *(volume for volume, _ in kafka_volumes),
                    ],
                },
            },
        },
    }


def disruption_budget(unit: Unit, namespace: str | None) -> Body | None:
    """With more than one replica, a voluntary eviction (a node drain) takes one pod at a time."""
    if unit.spec.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(unit.name, namespace, unit_labels(unit)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(unit)}},
    }


def service(unit: Unit, namespace: str | None) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(unit.name, namespace, unit_labels(unit)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(unit),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def workloads(definition: SagaDefinition, namespace: str | None) -> list[Body]:
    """Per service, in this order: its ConfigMap, its Deployment, its Service, and its
    PodDisruptionBudget when it has more than one replica."""
    objects: list[Body] = []
    for unit in units(definition):
        config = config_map(unit, definition, namespace)
        objects += [
            config,
            deployment(unit, definition, config, namespace),
            service(unit, namespace),
        ]
        budget = disruption_budget(unit, namespace)
        if budget is not None:
            objects.append(budget)
    return objects
