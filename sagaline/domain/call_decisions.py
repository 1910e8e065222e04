"""A calling step's decisions, pure: what a command, a compensation, a failed try and a call's
result get, given the outcome the step recorded for the saga and the call it owes (if any).

A calling step (docs/design.md, "Steps that call the outside world") keeps the rules of every
step (`sagaline.domain.participant_decisions`) and adds the owed call: its consumer's transaction
records the call as owed; a worker claims it (`calls` counts the tries and is the claim's token),
makes it with no transaction open, and records its result with the reply in a transaction of its
own. `sagaline.delivery.calling_participant` runs these decisions against the `step_call` table;
`sagaline simulate` runs the same ones over a simulated network, worker and partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from sagaline.domain.participant_decisions import (
    Compensate,
    Recorded,
    Repeat,
    on_compensation,
)

R = TypeVar("R")

ABANDONED = "abandoned after {calls} tries ({error}); cancelled by its key"


class CallPhase(StrEnum):
    APPLY = "APPLY"  # the command's call, not recorded yet
    UNDO = "UNDO"  # the compensation's call, for an applied effect
    ABANDON = "ABANDON"  # the command's call gave up: cancel by its key, then report failure


class Owed(Protocol):
    """The call a step owes for one saga (the `step_call` row, or the simulator's)."""

    @property
    def phase(self) -> CallPhase: ...

    @property
    def calls(self) -> int: ...

    @property
    def compensation_attempt(self) -> int | None: ...


def idempotency_key(saga_id: object, step: str, phase: str) -> str:
    """The stable key of a step's apply (`phase` "apply") or undo ("undo") for one saga: the
    same on every try, so that the partner, which keeps its keys, acts once."""
    return f"{saga_id}:{step}:{phase}"


# -- a command ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OweApply:
    """Nothing owed: owe the command's call (its reply comes when the call is recorded)."""


@dataclass(frozen=True)
class Absorb:
    """Already owed (or already waited for): nothing to do now, the reply comes with the record."""


def on_call_command(owed: Owed | None) -> OweApply | Absorb:
    """A command the participant decisions say to apply (`Apply`), at a calling step."""
    return OweApply() if owed is None else Absorb()


# -- a compensation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgetCall:
    """No try of the command's call has started: forget the owed call and compensate as the
    first message of the saga (a tombstone: a command that comes later is refused)."""

    compensate: Compensate


@dataclass(frozen=True)
class AwaitCall:
    """A try has started: wait for its result (recorded with the compensation's attempt), then
    undo an applied effect."""


@dataclass(frozen=True)
class OweUndo:
    """The effect is applied: owe the undo's call; acknowledge when it is recorded."""


def on_call_compensation(
    outcome: Recorded[R] | None, owed: Owed | None
) -> Repeat[R] | Compensate | ForgetCall | AwaitCall | OweUndo | Absorb:
    """A compensation at a calling step, given its recorded outcome and its owed call."""
    if owed is not None:
        if owed.phase is CallPhase.APPLY and owed.calls == 0:
            first: Repeat[R] | Compensate = on_compensation(None)
            assert isinstance(first, Compensate)
            return ForgetCall(first)
        return AwaitCall() if owed.compensation_attempt is None else Absorb()
    decision = on_compensation(outcome)
    if isinstance(decision, Compensate) and decision.undo:
        return OweUndo()
    return decision


# -- a try that failed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """Try again later, with the same key."""


@dataclass(frozen=True)
class Abandon:
    """The apply failed `max_attempts` times: cancel by its key (its booking may stand, or come
    late), then report a failure."""


def on_failed_try(phase: CallPhase, calls: int, max_attempts: int) -> Retry | Abandon:
    """A try (the `calls`-th of its phase) raised or timed out. An undo is repeated until it
    succeeds: an effect left standing is worse than a late one."""
    if phase is CallPhase.APPLY and calls >= max_attempts:
        return Abandon()
    return Retry()


def abandoned_reason(max_attempts: int, error: str | None) -> str:
    """The failure an abandoned apply reports."""
    return ABANDONED.format(calls=max_attempts, error=error)[:500]


# -- a call's result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """What the record of a call's result does, in one transaction: record the command's
    result with its reply (`result`: an apply, or an abandon as a failure); owe the undo next
    (`undo_next`: a compensation waits and the effect is applied; the owed call stays) or
    forget the owed call; and acknowledge the waiting compensation (`acknowledge`)."""

    result: bool
    undo_next: bool
    acknowledge: bool


def on_call_result(phase: CallPhase, applied: bool, waiting: int | None) -> Recording:
    """A try succeeded (`applied`: an apply's effect stands); `waiting` is the attempt of the
    compensation that waits for the call, read when recording (it may have come meanwhile)."""
    if phase is CallPhase.UNDO:
        return Recording(result=False, undo_next=False, acknowledge=True)
    if waiting is not None and applied and phase is CallPhase.APPLY:
        return Recording(result=True, undo_next=True, acknowledge=False)
    return Recording(result=True, undo_next=False, acknowledge=waiting is not None)
