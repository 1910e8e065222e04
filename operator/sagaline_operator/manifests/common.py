"""A Saga's services (its units) and what every object built for it carries: names, labels and
the owner reference to the Saga.

Shared by the topics, the users and the workloads; nothing here talks to Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sagaline.domain.definition import SagaDefinition, ServiceSpec
from sagaline.domain.messages import ORDER_SAGA
from sagaline_operator.config import GROUP, VERSION

Body = dict[str, Any]
Role = Literal["orchestrator", "initiator", "step"]

SAGA_LABEL = f"{GROUP}/saga"
SERVICE_LABEL = f"{GROUP}/service"
STRIMZI_CLUSTER = "strimzi.io/cluster"
MANAGED_BY = "sagaline-operator"
NAME_MAX = 63  # a Service's name is a DNS label


@dataclass(frozen=True)
class Unit:
    """One service of a saga: the orchestrator, the initiator or a step."""

    saga: str
    service: str  # what `sagaline serve|relay|migrate <service>` runs
    role: Role
    spec: ServiceSpec

    @property
    def name(self) -> str:
        """Its Deployment, Service, ConfigMap and KafkaUser (`unit_name`)."""
        return unit_name(self.saga, self.service, self.role)


def orchestrator_name(saga: str) -> str:
    return f"{saga}-orchestrator"


def unit_name(saga: str, service: str, role: Role) -> str:
    """The name of a service's children, unique per Saga, so that any number of Sagas share a
    namespace: `<saga>-orchestrator`, and `<saga>-<service>-service` for the others, except that
    the order saga's keep the names they always had (`order-service`, `payment-service`)."""
    if role == "orchestrator":
        return orchestrator_name(saga)
    return f"{service}-service" if saga == ORDER_SAGA else f"{saga}-{service}-service"


def units(definition: SagaDefinition) -> list[Unit]:
    spec = definition.spec
    name = definition.name
    initiator = [Unit(name, spec.initiator.name, "initiator", spec.initiator)]
    return [
        Unit(name, "orchestrator", "orchestrator", spec.orchestrator),
        *(initiator if spec.initiator.enabled else []),
        *(Unit(name, step.name, "step", step) for step in spec.steps),
    ]


def names_too_long(definition: SagaDefinition) -> list[str]:
    """Children names over a DNS label's 63 characters (a long Saga name and a long step's)."""
    return [unit.name for unit in units(definition) if len(unit.name) > NAME_MAX]


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


def object_metadata(name: str, namespace: str | None, labels: dict[str, str]) -> Body:
    """An object's `metadata`: its name, its labels and (unless rendered for a file) namespace."""
    metadata: Body = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata
