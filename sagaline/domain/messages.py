"""Message types and who sends what on which topic."""

from __future__ import annotations

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


@dataclass(frozen=True)
class StepTopics:
    step: str

    @property
    def command(self) -> str:
        return self.step

    @property
    def success(self) -> str:
        return f"{self.step}.success"

    @property
    def dlt(self) -> str:
        return f"{self.step}.dlt"

    @property
    def compensation(self) -> str:
        return f"{self.step}.compensation"


ORCHESTRATOR = "orchestrator"
ORCHESTRATOR_RESPONSE = "orchestrator.response"
ORCHESTRATOR_DLT = "orchestrator.dlt"
