"""A participant's decisions, pure: what a command or a compensation gets, given the outcome the
participant recorded for the saga (none yet, APPLIED, REJECTED or TOMBSTONE).

One outcome per saga and step: the first command that reaches a participant with nothing
recorded is tried, and its result (APPLIED or REJECTED) is recorded with the reply it was given.
Every later command of the saga (a re-send, a duplicate past the inbox window) gets that ORIGINAL
reply again, never a second effect. A compensation undoes an APPLIED effect once and records its
own reply, which every later compensation gets again; one that comes before any command leaves a
TOMBSTONE, and a command that comes after it is refused. `sagaline.delivery.participant` runs these
decisions in the consumer's transaction; `sagaline simulate` runs the same ones over a simulated
network. Replies are opaque here (`R`): an envelope in the database, a message in the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

REFUSED = "refused: compensated before the command"
UNDONE = "undone"
NOTHING_TO_UNDO_TOMBSTONE = "nothing to undo: the command is refused if it comes"
NOTHING_TO_UNDO_REJECTED = "nothing to undo: the command was rejected"


class OutcomeStatus(StrEnum):
    APPLIED = "APPLIED"
    REJECTED = "REJECTED"
    TOMBSTONE = "TOMBSTONE"  # compensated before any command arrived


class Recorded(Protocol[R_co]):
    """What a participant recorded for one saga (the `step_outcome` row, or the simulator's)."""

    @property
    def status(self) -> OutcomeStatus: ...

    @property
    def reply(self) -> R_co | None: ...

    @property
    def compensation_reply(self) -> R_co | None: ...


@dataclass(frozen=True)
class Apply:
    """Nothing recorded yet: try the effect, record APPLIED or REJECTED with the reply sent."""


@dataclass(frozen=True)
class Repeat(Generic[R]):
    """Answer with the reply given before (same message id): no second effect."""

    reply: R


@dataclass(frozen=True)
class Refuse:
    """A command after a compensation: answer with a failure, apply nothing, record nothing."""

    reason: str = REFUSED


@dataclass(frozen=True)
class Compensate:
    """The first compensation of the saga: record a tombstone first if no command came, undo an
    applied effect, and record the acknowledgement (saying `effect`) as the compensation reply."""

    tombstone: bool
    undo: bool
    effect: str


def on_command(outcome: Recorded[R] | None) -> Apply | Repeat[R] | Refuse:
    if outcome is None:
        return Apply()
    if outcome.status is OutcomeStatus.TOMBSTONE:
        return Refuse()
    if outcome.reply is not None:
        return Repeat(outcome.reply)
    return Apply()  # never recorded without its reply; kept total


def applied_status(applied: bool) -> OutcomeStatus:
    """The outcome recorded with the reply of the command that was tried."""
    return OutcomeStatus.APPLIED if applied else OutcomeStatus.REJECTED


def on_compensation(outcome: Recorded[R] | None) -> Repeat[R] | Compensate:
    if outcome is not None and outcome.compensation_reply is not None:
        return Repeat(outcome.compensation_reply)
    if outcome is None:
        return Compensate(tombstone=True, undo=False, effect=NOTHING_TO_UNDO_TOMBSTONE)
    if outcome.status is OutcomeStatus.APPLIED:
        return Compensate(tombstone=False, undo=True, effect=UNDONE)
    if outcome.status is OutcomeStatus.TOMBSTONE:  # recorded without its reply: kept total
        return Compensate(tombstone=False, undo=False, effect=NOTHING_TO_UNDO_TOMBSTONE)
    return Compensate(tombstone=False, undo=False, effect=NOTHING_TO_UNDO_REJECTED)
