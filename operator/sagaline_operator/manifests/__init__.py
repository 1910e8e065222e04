"""What a Saga becomes: its KafkaTopics, its KafkaUsers and, per service, a ConfigMap, a
Deployment and a Service.

Pure functions of the parsed `SagaDefinition` (the model the services load): the operator
applies what they return, `render-topics` writes the KafkaTopics to `k8s/topics/`, and the tests
validate them against the schemas. Nothing here talks to Kubernetes.

- `common`: the saga's services (units) and the names, labels and owner reference every object
  carries;
- `topics`: the Strimzi KafkaTopics; `users`: the Strimzi KafkaUsers and their ACLs;
- `pods`: per service a ConfigMap, a Deployment, a Service, a PodDisruptionBudget (`workloads`);
  `env`: what their containers read (environment, Kafka secrets).

The package re-exports what the operator and the tests use: `manifests.workloads(...)`.
"""

from sagaline_operator.manifests.common import (
    MANAGED_BY,
    SAGA_LABEL,
    SERVICE_LABEL,
    STRIMZI_CLUSTER,
    Body,
    Role,
    Unit,
    missing_databases,
    names_too_long,
    orchestrator_name,
    owner_reference,
    saga_labels,
    selector,
    unit_labels,
    unit_name,
    units,
)
from sagaline_operator.manifests.env import KAFKA_CA_DIR, KAFKA_USER_DIR, SAGA_DIR, SAGA_KEY
from sagaline_operator.manifests.pods import (
    APP_RESOURCES,
    CONFIG_HASH,
    HTTP_PORT,
    RELAY_METRICS_PORT,
    RELAY_RESOURCES,
    RUN_AS,
    config_hash,
    config_map,
    deployment,
    disruption_budget,
    resources,
    runtime_document,
    service,
    workloads,
)
from sagaline_operator.manifests.topics import kafka_topics, render_topics
from sagaline_operator.manifests.users import kafka_users

__all__ = [
    "APP_RESOURCES",
    "CONFIG_HASH",
    "HTTP_PORT",
    "KAFKA_CA_DIR",
    "KAFKA_USER_DIR",
    "MANAGED_BY",
    "RELAY_METRICS_PORT",
    "RELAY_RESOURCES",
    "RUN_AS",
    "SAGA_DIR",
    "SAGA_KEY",
    "SAGA_LABEL",
    "SERVICE_LABEL",
    "STRIMZI_CLUSTER",
    "Body",
    "Role",
    "Unit",
    "config_hash",
    "config_map",
    "deployment",
    "disruption_budget",
    "kafka_topics",
    "kafka_users",
    "missing_databases",
    "names_too_long",
    "orchestrator_name",
    "owner_reference",
    "render_topics",
    "resources",
    "runtime_document",
    "saga_labels",
    "selector",
    "service",
    "unit_labels",
    "unit_name",
    "units",
    "workloads",
]
