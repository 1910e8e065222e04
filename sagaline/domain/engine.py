"""The saga engine: pure state transitions, no I/O.

Given a saga's state and an event (start, a step's reply, the clock), it returns the new state and
the actions to take (commands and compensations to send, the saga's outcome). The orchestrator
persists the state and turns actions into outbox messages in one transaction.

Rules: a step that may have taken effect (it succeeded, or its command is in flight, timed out
or was dead-lettered) is compensated when the saga fails; a step that was rejected took no effect
and is not; a step never started is skipped. Commands and compensations are re-sent on timeout
with exponential backoff up to `max_attempts`, each step with its own time-out and attempts
(`Policy.of` takes them from the definition); a command that never answers fails its step (and
is compensated), a compensation that never answers leaves the saga FAILED, which is visible and
counted. A success that comes for a step the saga has failed or given up is answered with a
compensation, even after the saga ended (it is then reopened until that compensation ends), so
no effect can stand unclaimed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel

from sagaline.domain.backoff import attempt_timeout_s
from sagaline.domain.definition import Execution, SagaDefinition, StepTiming

GIVEN_UP = "; compensation given up for "


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    # Never an engine state: the orchestrator shows it on a saga whose processing keeps raising
    # (its state keeps the status it had): docs/design.md, "A stuck saga".
    STUCK = "STUCK"

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


class StepState(BaseModel):
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    deadline: float | None = None
    reason: str | None = None


class SagaState(BaseModel):
    status: SagaStatus = SagaStatus.RUNNING
    steps: dict[str, StepState]
    reason: str | None = None

    @classmethod
    def new(cls, step_names: list[str]) -> SagaState:
        return cls(steps={name: StepState() for name in step_names})

    @property
    def next_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self.steps.values() if s.deadline is not None]
        return min(deadlines) if deadlines else None


@dataclass(frozen=True)
class SendCommand:
    step: str
    attempt: int


@dataclass(frozen=True)
class SendCompensation:
    step: str
    attempt: int


@dataclass(frozen=True)
class Finish:
    status: SagaStatus
    reason: str | None


@dataclass(frozen=True)
class ResendOutcome:
    """Answer the initiator again with the saga's original outcome: the stored message itself,
    or (`fresh`) a new message that carries it, which an inbox that dropped or dead-lettered the
    original does not take for a duplicate."""

    fresh: bool = False


Action = SendCommand | SendCompensation | Finish | ResendOutcome


@dataclass(frozen=True)
class Policy:
    """How the steps run and are re-sent: `steps` holds each step's own timing; a step not in
    it is re-sent with the policy's `step_timeout_s` and attempts."""

    execution: Execution
    step_timeout_s: float
    max_attempts: int
    compensation_max_attempts: int | None = None  # None: as many as a command
    steps: Mapping[str, StepTiming] = field(default_factory=dict)

    @classmethod
    def of(cls, definition: SagaDefinition) -> Policy:
        """The policy of a Saga: its execution, and every step's effective timing."""
        spec = definition.spec
        return cls(
            execution=spec.execution,
            step_timeout_s=spec.step_timeout_seconds,
            max_attempts=spec.max_attempts,
            compensation_max_attempts=spec.compensation_max_attempts,
            steps=spec.timings(),
        )

    @property
    def compensation_attempts(self) -> int:
        return self.compensation_max_attempts or self.max_attempts

    def timing(self, step: str | None = None) -> StepTiming:
        """The step's timing (None, or a step the policy does not list: the policy's own)."""
        if step is not None and step in self.steps:
            return self.steps[step]
        return StepTiming(self.step_timeout_s, self.max_attempts, self.compensation_attempts)

    def deadline(self, now: float, attempt: int, step: str | None = None) -> float:
        return now + attempt_timeout_s(self.timing(step).timeout_s, attempt)


class Engine:
    """Applies events to one saga's state (mutated in place) and collects the actions."""

    def __init__(self, policy: Policy, state: SagaState) -> None:
        self.policy = policy
        self.state = state
        self.actions: list[Action] = []

    # -- events ---------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self.state.status is SagaStatus.RUNNING and all(
            s.status is StepStatus.PENDING for s in self.state.steps.values()
        ):
            names = list(self.state.steps)
            first = names if self.policy.execution is Execution.PARALLEL else names[:1]
            for name in first:
                self._command(name, now, attempt=1)
        return self._take()

    def repeated_start(self) -> list[Action]:
        """A start for a saga that exists: a finished one answers with its original outcome."""
        if self.state.status.terminal:
            self.actions.append(ResendOutcome())
        return self._take()

    def cancel(self, reason: str, now: float) -> list[Action]:
        """The initiator gave up its start. A saga never started ends compensated (nothing ran:
        every step is skipped), a running one is compensated, a compensating one goes on, and
        one that ended answers with its outcome in a new message."""
        if self.state.status is SagaStatus.RUNNING:
            self._compensate(reason, now)
        elif self.state.status.terminal:
            self.actions.append(ResendOutcome(fresh=True))
        return self._take()

    def succeeded(self, step: str, now: float) -> list[Action]:
        state = self.state.steps[step]
        if state.status is StepStatus.RUNNING:
            state.status, state.deadline = StepStatus.SUCCEEDED, None
            self._advance(now)
        elif state.status in (StepStatus.FAILED, StepStatus.COMPENSATION_FAILED):
            # A late success (any cause): the effect took place after all, and must be undone.
            self._reopen()
            self._compensation(step, now, attempt=1)
        return self._take()

    def failed(self, step: str, reason: str, now: float) -> list[Action]:
        state = self.state.steps[step]
        if state.status is StepStatus.RUNNING:
            state.status, state.deadline, state.reason = StepStatus.FAILED, None, reason
            self._compensate(f"{step}: {reason}", now)
        return self._take()

    def dead_lettered(self, step: str, *, command: bool, reason: str, now: float) -> list[Action]:
        """The step's service could not read a message of this saga and dead-lettered it.

        A dead-lettered command fails the step, and the step is compensated like one that timed
        out: another attempt of the command may be in flight and take effect (or have taken it),
        and the compensation undoes it or leaves the tombstone that refuses it. A dead-lettered
        compensation is re-sent on timeout like a lost one.
        """
        state = self.state.steps[step]
        if command and state.status is StepStatus.RUNNING:
            state.reason = reason
            self._compensate(f"{step}: {reason}", now)
        return self._take()

    def compensated(self, step: str, now: float) -> list[Action]:
        state = self.state.steps[step]
        if state.status is StepStatus.COMPENSATING:
            state.status, state.deadline = StepStatus.COMPENSATED, None
            self._finish_compensation()
        elif state.status is StepStatus.COMPENSATION_FAILED:
            # A late acknowledgement: the effect was undone after the saga gave up on it. The
            # saga ends COMPENSATED once no step it gave up on is left.
            state.status, state.reason = StepStatus.COMPENSATED, None
            if not any(
                s.status is StepStatus.COMPENSATION_FAILED for s in self.state.steps.values()
            ):
                self._reopen()
                self._finish_compensation()
        return self._take()

    def retry(self, now: float) -> list[Action]:
        """An operator re-drives a FAILED saga: each compensation given up is sent again, with
        fresh attempts. Nothing for a saga in any other state."""
        if self.state.status is SagaStatus.FAILED:
            self._reopen()
            for name, state in self.state.steps.items():
                if state.status is StepStatus.COMPENSATION_FAILED:
                    self._compensation(name, now, attempt=1)
        return self._take()

    def tick(self, now: float) -> list[Action]:
        """Re-send what timed out, or give it up after the step's max attempts."""
        for name, state in self.state.steps.items():
            if state.deadline is None or state.deadline > now:
                continue
            timing = self.policy.timing(name)
            if state.status is StepStatus.RUNNING:
                if state.attempt < timing.max_attempts:
                    self._command(name, now, attempt=state.attempt + 1)
                else:
                    state.reason = f"no reply after {state.attempt} attempts"
                    self._compensate(f"{name}: timed out ({state.reason})", now)
            elif state.status is StepStatus.COMPENSATING:
                if state.attempt < timing.compensation_max_attempts:
                    self._compensation(name, now, attempt=state.attempt + 1)
                else:
                    state.status, state.deadline = StepStatus.COMPENSATION_FAILED, None
                    state.reason = f"compensation unanswered after {state.attempt} attempts"
                    self._finish_compensation()
        return self._take()

    # -- transitions ----------------------------------------------------------------------------

    def _take(self) -> list[Action]:
        actions, self.actions = self.actions, []
        return actions

    def _command(self, step: str, now: float, *, attempt: int) -> None:
        state = self.state.steps[step]
        state.status, state.attempt = StepStatus.RUNNING, attempt
        state.deadline = self.policy.deadline(now, attempt, step)
        self.actions.append(SendCommand(step, attempt))

    def _compensation(self, step: str, now: float, *, attempt: int) -> None:
        state = self.state.steps[step]
        state.status, state.attempt = StepStatus.COMPENSATING, attempt
        state.deadline = self.policy.deadline(now, attempt, step)
        self.actions.append(SendCompensation(step, attempt))

    def _advance(self, now: float) -> None:
        if self.state.status is not SagaStatus.RUNNING:
            return
        steps = self.state.steps
        if all(s.status is StepStatus.SUCCEEDED for s in steps.values()):
            self._finish(SagaStatus.COMPLETED, None)
            return
        if self.policy.execution is Execution.SEQUENTIAL:
            pending = [n for n, s in steps.items() if s.status is StepStatus.PENDING]
            if pending and not any(s.status is StepStatus.RUNNING for s in steps.values()):
                self._command(pending[0], now, attempt=1)

    def _compensate(self, reason: str, now: float) -> None:
        if self.state.status is not SagaStatus.RUNNING:
            return
        self.state.status, self.state.reason = SagaStatus.COMPENSATING, reason
        for name, state in self.state.steps.items():
            if state.status in (StepStatus.SUCCEEDED, StepStatus.RUNNING):
                self._compensation(name, now, attempt=1)
            elif state.status is StepStatus.PENDING:
                state.status = StepStatus.SKIPPED
        self._finish_compensation()

    def _reopen(self) -> None:
        """A saga that ended compensated or failed compensates again (a late success)."""
        if self.state.status in (SagaStatus.COMPENSATED, SagaStatus.FAILED):
            reason = (self.state.reason or "").split(GIVEN_UP, 1)[0]
            self.state.status, self.state.reason = SagaStatus.COMPENSATING, reason

    def _finish_compensation(self) -> None:
        steps = self.state.steps.values()
        if self.state.status is not SagaStatus.COMPENSATING:
            return
        if any(s.status is StepStatus.COMPENSATING for s in steps):
            return
        if any(s.status is StepStatus.COMPENSATION_FAILED for s in steps):
            failed = [
                n for n, s in self.state.steps.items() if s.status is StepStatus.COMPENSATION_FAILED
            ]
            self._finish(SagaStatus.FAILED, f"{self.state.reason}{GIVEN_UP}{', '.join(failed)}")
        else:
            self._finish(SagaStatus.COMPENSATED, self.state.reason)

    def _finish(self, status: SagaStatus, reason: str | None) -> None:
        self.state.status, self.state.reason = status, reason
        for state in self.state.steps.values():
            state.deadline = None
        self.actions.append(Finish(status, reason))
