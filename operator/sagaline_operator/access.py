"""Who may read and write which topic: the least privilege of each service, as Kafka ACLs.

A step service reads its command and compensation topics and writes its success and dead-letter
topics; the orchestrator alone writes commands and compensations; the initiator writes only the
orchestrator's topic (and its dead letters) and reads only the answers. With these ACLs on a
broker that authorizes, a client that is not the orchestrator cannot charge an account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagaline.domain.definition import SagaDefinition, consumer_group


@dataclass(frozen=True)
class Access:
    """What one service's Kafka clients may do."""

    reads: tuple[str, ...]  # topics its consumer reads
    writes: tuple[str, ...]  # topics its relay and its dead-letter path write
    group: str  # the one consumer group it joins


def service_access(definition: SagaDefinition, service: str, role: str) -> Access:
    """`role` is the unit's: orchestrator, initiator or step."""
    group = consumer_group(definition.name, service)
    saga = definition.saga_topics
    steps = [saga.step(step) for step in definition.step_names]
    if role == "orchestrator":
        replies = [topic for step in steps for topic in (step.success, step.dlt)]
        commands = [topic for step in steps for topic in (step.command, step.compensation)]
        return Access((saga.orchestrator, *replies), (*commands, saga.response, saga.dlt), group)
    if role == "initiator":
        return Access((saga.response,), (saga.orchestrator, saga.dlt), group)
    step = saga.step(service)
    return Access((step.command, step.compensation), (step.success, step.dlt), group)


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
