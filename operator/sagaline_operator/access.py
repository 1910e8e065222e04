"""Who may read and write which topic: the least privilege of each service, as Kafka ACLs.

A step service reads its command and compensation topics and writes its success and dead-letter
topics; the orchestrator alone writes commands and compensations; the initiator writes only the
orchestrator's topic (and its dead letters) and reads only the answers. With these ACLs on a
broker that authorizes, a client that is not the orchestrator cannot charge an account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagaline.domain.definition import SagaDefinition, consumer_group
from sagaline.domain.messages import ORCHESTRATOR, ORCHESTRATOR_DLT, ORCHESTRATOR_RESPONSE


@dataclass(frozen=True)
class Access:
    """What one service's Kafka clients may do."""

    reads: tuple[str, ...]  # topics its consumer reads
    writes: tuple[str, ...]  # topics its relay and its dead-letter path write
    group: str  # the one consumer group it joins


def service_access(definition: SagaDefinition, service: str, role: str) -> Access:
    """`role` is the unit's: orchestrator, initiator or step."""
    group = consumer_group(definition.name, service)
    steps = definition.step_names
    if role == "orchestrator":
        replies = [f"{step}{suffix}" for step in steps for suffix in (".success", ".dlt")]
        commands = [f"{step}{suffix}" for step in steps for suffix in ("", ".compensation")]
        return Access(
            (ORCHESTRATOR, *replies), (*commands, ORCHESTRATOR_RESPONSE, ORCHESTRATOR_DLT), group
        )
    if role == "initiator":
        return Access((ORCHESTRATOR_RESPONSE,), (ORCHESTRATOR, ORCHESTRATOR_DLT), group)
    return Access(
        (service, f"{service}.compensation"), (f"{service}.success", f"{service}.dlt"), group
    )


def simple_acls(access: Access) -> list[dict[str, object]]:
    """Strimzi's `simple` authorization rules (KafkaUser `spec.authorization.acls`)."""

    def rule(kind: str, name: str, operations: list[str]) -> dict[str, object]:
        resource = {"type": kind, "name": name, "patternType": "literal"}
        return {"resource": resource, "operations": operations, "host": "*"}

    return [
        *(rule("topic", topic, ["Read", "Describe"]) for topic in access.reads),
        *(rule("topic", topic, ["Write", "Describe"]) for topic in access.writes),
        rule("group", access.group, ["Read"]),
    ]
