"""What a Saga's services run as: per service a ConfigMap (the saga they read), a Deployment
(migrations, the outbox relay, the app), a Service and, with replicas, a PodDisruptionBudget.

Defaults for what the spec leaves unset (resources, security contexts, probes) live here.
"""

from __future__ import annotations

import hashlib
import json

import yaml

from sagaline.domain.definition import Resources, SagaDefinition, StepSpec
from sagaline_operator.config import GROUP
from sagaline_operator.manifests.common import (
    Body,
    Unit,
    object_metadata,
    selector,
    unit_labels,
    units,
)
from sagaline_operator.manifests.env import (
    SAGA_DIR,
    SAGA_KEY,
    kafka_volumes,
    secret_env,
    service_env,
    tracing_env,
)

HTTP_PORT = 8080
RELAY_METRICS_PORT = 9181  # the relay sidecar's /metrics and /healthz
RUN_AS = 10001  # the image's non-root user (numeric, so runAsNonRoot can be verified)
CONFIG_HASH = f"{GROUP}/config-hash"

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


def runtime_document(definition: SagaDefinition) -> Body:
    """The saga definition the services read: what changes their behaviour, nothing more.

    Replicas, images, commands, databases and the topics' layout stay out, so that scaling a
    service, giving a step a new image or growing the topics does not restart every pod.
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
            "compensationMaxAttempts": spec.compensation_max_attempts,
            "initiator": _initiator(definition),
            "steps": [{"name": step.name, **_own_timing(step)} for step in spec.steps],
        },
    }


def _initiator(definition: SagaDefinition) -> Body:
    """Its name; `enabled: false` only when it has none, so that the ConfigMap of a Saga with an
    initiator is what it was (no pod restarts when the operator is upgraded)."""
    initiator = definition.spec.initiator
    return {"name": initiator.name} if initiator.enabled else {"enabled": False}


def _own_timing(step: StepSpec) -> Body:
    """What a step sets for itself that changes the services' behaviour: its re-sends."""
    own = {
        "timeoutSeconds": step.timeout_seconds,
        "maxAttempts": step.max_attempts,
        "compensationMaxAttempts": step.compensation_max_attempts,
    }
    return {key: value for key, value in own.items() if value is not None}


def config_map(unit: Unit, definition: SagaDefinition, namespace: str | None) -> Body:
    text = yaml.safe_dump(runtime_document(definition), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(unit.name, namespace, unit_labels(unit)),
        "data": {SAGA_KEY: text},
    }


def config_hash(config: Body) -> str:
    """Changes with the ConfigMap's data: in the pod template, it rolls the Deployment."""
    return hashlib.sha256(json.dumps(config["data"], sort_keys=True).encode()).hexdigest()[:16]


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
    step = unit.spec if isinstance(unit.spec, StepSpec) else None
    # A step in its own image relays and migrates with it too: its migrations live in it.
    image = spec.image if step is None else spec.image_of(step)
    env = service_env(unit, definition)
    secret_volumes = kafka_volumes(unit, definition)
    mounts = [*MOUNTS, *(mount for _, mount in secret_volumes)]
    relay_resources = resources(unit.spec.relay_resources, RELAY_RESOURCES)

    migrate = _container("migrate", ["sagaline", "migrate", unit.service], env, image, mounts)
    migrate["resources"] = relay_resources

    relay_env = [
        *env,
        {"name": "SAGALINE_RELAY_METRICS_PORT", "value": str(RELAY_METRICS_PORT)},
        *tracing_env(definition, f"{unit.name}-relay"),
    ]
    relay = _container("relay", ["sagaline", "relay", unit.service], relay_env, image, mounts)
    relay["restartPolicy"] = "Always"  # a native sidecar: started after `migrate`, before the app
    relay["ports"] = [{"name": "metrics", "containerPort": RELAY_METRICS_PORT, "protocol": "TCP"}]
    relay["startupProbe"] = _probe("/healthz", "metrics", period=2, timeout=2, failures=30)
    relay["livenessProbe"] = _probe("/healthz", "metrics", period=10, timeout=2, failures=3)
    relay["resources"] = relay_resources

    app_env = [*env, *tracing_env(definition, unit.name)]
    if spec.api_token is not None:
        token = spec.api_token
        app_env.append(secret_env("SAGALINE_API_TOKEN", token.secret_name, token.secret_key))
    serve = ["sagaline", "serve", unit.service, "--host", "0.0.0.0", "--port", str(HTTP_PORT)]
    app = _container("app", serve, app_env, image, mounts)
    if step is not None and step.command is not None:
        app["command"] = list(step.command)
    if step is not None and step.args is not None:
        app["args"] = list(step.args)  # after the command, its own or `sagaline serve`'s
    app["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    app["startupProbe"] = _probe("/healthz", "http", period=2, timeout=2, failures=30)
    app["livenessProbe"] = _probe("/healthz", "http", period=10, timeout=2, failures=3)
    app["readinessProbe"] = _probe("/readyz", "http", period=5, timeout=3, failures=3)
    app["resources"] = resources(unit.spec.resources, APP_RESOURCES)

    labels = unit_labels(unit)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(unit.name, namespace, labels),
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
                        *(volume for volume, _ in secret_volumes),
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
        "metadata": object_metadata(unit.name, namespace, unit_labels(unit)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(unit)}},
    }


def service(unit: Unit, namespace: str | None) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(unit.name, namespace, unit_labels(unit)),
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
