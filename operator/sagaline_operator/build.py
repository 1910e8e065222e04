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

from sagaline_operator.config import GROUP, VERSION
from services.common.definition import SagaDefinition, ServiceSpec

Body = dict[str, Any]
Role = Literal["orchestrator", "initiator", "step"]

HTTP_PORT = 8080
SAGA_DIR = "/etc/sagaline"
SAGA_KEY = "saga.yaml"
RUN_AS = 10001  # the image's non-root user (numeric, so runAsNonRoot can be verified)

SAGA_LABEL = f"{GROUP}/saga"
SERVICE_LABEL = f"{GROUP}/service"
CONFIG_HASH = f"{GROUP}/config-hash"
STRIMZI_CLUSTER = "strimzi.io/cluster"
MANAGED_BY = "sagaline-operator"


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


def _env(unit: Unit, definition: SagaDefinition) -> list[Body]:
    database = unit.spec.database
    if database is None:
        raise ValueError(f"{unit.service}: database.secretName is required on Kubernetes")
    return [
        {
            "name": "DATABASE_URL",
            "valueFrom": {
                "secretKeyRef": {"name": database.secret_name, "key": database.secret_key}
            },
        },
        {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": definition.spec.kafka.bootstrap_servers},
        {"name": "SAGA_FILE", "value": f"{SAGA_DIR}/{SAGA_KEY}"},
        {"name": "SAGALINE_CREATE_TOPICS", "value": "false"},  # Strimzi owns the topics
    ]


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


def _container(name: str, command: list[str], env: list[Body], image: str) -> Body:
    return {
        "name": name,
        "image": image,
        "command": command,
        "env": env,
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": MOUNTS,
    }


def _probe(path: str, period: int, timeout: int, failures: int) -> Body:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def deployment(unit: Unit, definition: SagaDefinition, config: Body, namespace: str | None) -> Body:
    """The service's pod: migrations (init), the outbox relay (native sidecar), the app."""
    image = definition.spec.image
    env = _env(unit, definition)
    migrate = _container("migrate", ["sagaline", "migrate", unit.service], env, image)
    relay = _container("relay", ["sagaline", "relay", unit.service], env, image)
    relay["restartPolicy"] = "Always"  # a native sidecar: started after `migrate`, before the app
    serve = ["sagaline", "serve", unit.service, "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    app = _container("app", serve, env, image)
    app["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    app["startupProbe"] = _probe("/healthz", period=2, timeout=2, failures=30)
    app["livenessProbe"] = _probe("/healthz", period=10, timeout=2, failures=3)
    app["readinessProbe"] = _probe("/readyz", period=5, timeout=3, failures=3)
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
                "metadata": {"labels": labels, "annotations": {CONFIG_HASH: config_hash(config)}},
                "spec": {
                    "automountServiceAccountToken": False,  # the services never call Kubernetes
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "initContainers": [migrate, relay],
                    "containers": [app],
                    "volumes": [
                        {"name": "saga", "configMap": {"name": config["metadata"]["name"]}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
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
    """Per service, in this order: its ConfigMap, its Deployment, its Service."""
    objects: list[Body] = []
    for unit in units(definition):
        config = config_map(unit, definition, namespace)
        objects += [
            config,
            deployment(unit, definition, config, namespace),
            service(unit, namespace),
        ]
    return objects
