"""Message types and who sends what on which topic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SAGA_START = "saga.start"
SAGA_CANCEL = "saga.cancel"  # the initiator gave up its start: end the saga, answer its outcome
SAGA_COMPLETED = "saga.completed"
SAGA_COMPENSATED = "saga.compensated"
SAGA_FAILED = "saga.failed"
SAGA_OUTCOMES = (SAGA_COMPLETED, SAGA_COMPENSATED, SAGA_FAILED)

# Verbs of the reference steps; any other step uses execute/executed.
KNOWN_VERBS = {"payment": ("charge", "charged"), "stock": ("reserve", "reserved")}


@dataclass(frozen=True)
class StepTypes:
    """The five message types of one step, e.g. payment.charge ... payment.compensated."""

    step: str

    @property
    def _verbs(self) -> tuple[str, str]:
        return KNOWN_VERBS.get(self.step, ("execute", "executed"))

    @property
    def command(self) -> str:
        return f"{self.step}.{self._verbs[0]}"

    @property
    def done(self) -> str:
        return f"{self.step}.{self._verbs[1]}"

    @property
    def failed(self) -> str:
        return f"{self.step}.failed"

    @property
    def compensate(self) -> str:
        return f"{self.step}.compensate"

    @property
    def compensated(self) -> str:
        return f"{self.step}.compensated"


# The seed's saga: its topics keep their unprefixed names (`orchestrator`, `payment`, ...).
ORDER_SAGA = "order"


def topic_prefix(saga: str) -> str:
    """What every topic of a saga starts with: nothing for `order`, else `<saga>.`."""
    return "" if saga == ORDER_SAGA else f"{saga}."


@dataclass(frozen=True)
class StepTopics:
    """The four topics of one step of one saga (docs/design.md, "Topics")."""

    saga: str
    step: str

    @property
    def command(self) -> str:
        return f"{topic_prefix(self.saga)}{self.step}"

    @property
    def success(self) -> str:
        return f"{self.command}.success"

    @property
    def dlt(self) -> str:
        return f"{self.command}.dlt"

    @property
    def compensation(self) -> str:
        return f"{self.command}.compensation"

    def all(self) -> list[str]:
        return [self.command, self.success, self.dlt, self.compensation]


@dataclass(frozen=True)
class SagaTopics:
    """Every topic of one saga, derived from its name and nothing else, so that several sagas
    share a Kafka cluster: the orchestrator's three and four per step (`step(name)`)."""

    saga: str

    @property
    def orchestrator(self) -> str:
        """Starts and cancels, to the orchestrator."""
        return f"{topic_prefix(self.saga)}orchestrator"

    @property
    def response(self) -> str:
        """Outcomes, to the initiator."""
        return f"{self.orchestrator}.response"

    @property
    def dlt(self) -> str:
        """Dead letters of the orchestrator and of the initiator."""
        return f"{self.orchestrator}.dlt"

    def step(self, step: str) -> StepTopics:
        return StepTopics(self.saga, step)

    def all(self, steps: Iterable[str]) -> list[str]:
        """The orchestrator's three, then each step's four, in the steps' order."""
        return [
            self.orchestrator,
            self.response,
            self.dlt,
            *(topic for step in steps for topic in self.step(step).all()),
        ]

    def dead_letters_of(self, service: str, steps: Iterable[str]) -> str:
        """Where a service dead-letters: a step its own `.dlt`; the orchestrator and the
        initiator the orchestrator's."""
        return self.step(service).dlt if service in set(steps) else self.dlt
