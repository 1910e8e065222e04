"""What a simulated run does not change: the Saga definition, the policies, the business answers
of the steps, and who reads and writes which topic (`Model`)."""

from __future__ import annotations

from collections.abc import Mapping

from sagaline.domain.definition import SagaDefinition
from sagaline.domain.engine import Policy
from sagaline.domain.initiator import Initiator, InitiatorPolicy
from sagaline.domain.messages import SAGA_START, StepTypes

ORCHESTRATOR_SERVICE = "orchestrator"


class Model:
    """What a run does not change: the definition, the policies and the business answers (does
    each step accept the command, or reject it by its rules)."""

    def __init__(
        self,
        definition: SagaDefinition,
        accepts: tuple[bool, ...],
        calling: Mapping[str, int] | None = None,
    ) -> None:
        spec = definition.spec
        self.definition = definition
        self.execution = spec.execution
        self.steps = definition.step_names
        if len(accepts) != len(self.steps):
            raise ValueError(f"one answer per step: {len(self.steps)} steps, {len(accepts)}")
        self.accepts = dict(zip(self.steps, accepts, strict=True))
        # The calling steps (simulation/calls.py) and their simulated max_attempts; each has a
        # channel of its own work (`<step>#calls`: its owed call, read by its own worker).
        self.calling = dict(calling or {})
        self.work = {step: f"{step}#calls" for step in self.calling}
        self.policy = Policy.of(definition)  # the orchestrator's, step by step
        self.initiator = Initiator(InitiatorPolicy.of(definition))
        self.initiator_name = spec.initiator.name
        self.types = {step: StepTypes(step) for step in self.steps}
        self.saga_topics = definition.saga_topics
        self.topics = {step: self.saga_topics.step(step) for step in self.steps}
        orchestrator, response = self.saga_topics.orchestrator, self.saga_topics.response
        self.services = (ORCHESTRATOR_SERVICE, self.initiator_name, *self.steps)
        self.reader = {orchestrator: ORCHESTRATOR_SERVICE}
        self.reader[response] = self.initiator_name
        self.step_of: dict[str, str] = {}
        for step, topics in self.topics.items():
            self.reader[topics.command] = self.reader[topics.compensation] = step
            self.reader[topics.success] = self.reader[topics.dlt] = ORCHESTRATOR_SERVICE
            for topic in (topics.command, topics.compensation, topics.success, topics.dlt):
                self.step_of[topic] = step
        for step, work in self.work.items():
            self.reader[work] = step
        self.writes = {ORCHESTRATOR_SERVICE: {response}}
        self.writes[self.initiator_name] = {orchestrator}
        for step, topics in self.topics.items():
            self.writes[ORCHESTRATOR_SERVICE] |= {topics.command, topics.compensation}
            self.writes[step] = {topics.success, topics.dlt}
        # What a delivery to a service can write (the order-service writes on its timer only).
        self.replies = {service: frozenset(self.writes[service]) for service in self.services}
        for step, work in self.work.items():
            self.replies[step] |= {work}
        self.replies[self.initiator_name] = frozenset()
        self.reads = {
            service: tuple(t for t, reader in self.reader.items() if reader == service)
            for service in self.services
        }
        self.stale_readers = (ORCHESTRATOR_SERVICE, self.initiator_name)
        # What a reader may be unable to read for good: a message with a payload of the order.
        self.poisonable = {orchestrator: SAGA_START}
        self.poisonable |= {self.topics[s].command: self.types[s].command for s in self.steps}

    def describe(self) -> str:
        answers = ", ".join(f"{s} {'accepts' if y else 'rejects'}" for s, y in self.accepts.items())
        calling = f" (calling: {', '.join(self.calling)})" if self.calling else ""
        return f"{self.definition.name}, {self.execution}: {answers}{calling}"
