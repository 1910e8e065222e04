"""A Saga's Strimzi KafkaUsers: per service, least-privilege ACLs (`sagaline_operator.access`),
when the spec asks for authentication."""

from __future__ import annotations

from sagaline.domain.definition import SagaDefinition
from sagaline_operator.access import service_access, simple_acls
from sagaline_operator.manifests.common import (
    STRIMZI_CLUSTER,
    Body,
    object_metadata,
    unit_labels,
    units,
)


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
                "metadata": object_metadata(unit.name, namespace, labels),
                "spec": {
                    "authentication": {"type": kafka.authentication.type},
                    "authorization": {"type": "simple", "acls": simple_acls(access)},
                },
            }
        )
    return users
