"""Calling steps in simulation: the owed call, the worker that makes it, and the partner it calls.

A step is a calling step when its declaration (the Saga's `spec.steps[].declaration`, imported
if it can be) is a `sagaline.sdk.Step` with `calls=`; `--calling-steps` overrides that
(`calling_steps`). Its consumer runs the participant decisions and the calling step's
(`sagaline.domain.call_decisions`): a command owes a call, a compensation forgets it (no try
yet), waits for it, or owes the undo. The step's worker is part of the step's service:

- `call <step>` (free): claim the owed call (`calls` + 1) and make it; the partner answers at
  once and the answer waits at the worker; `record <step>` (free) records it with its reply.
- `CALL_TIMEOUT <step>` (a fault): the worker stops waiting; the try is recorded as failed
  (retried with the same key, or abandoned after `max_attempts`: cancelled by its key, then
  failed) and the request is still on its way to the partner, which takes it whenever
  (`partner <step>`, free): before a cancellation, or after it (then it is refused).
- `WORKER_CRASH <step>` (a fault): between a call and its record; the row stays claimed and is
  due again, so the call is made again with the same key.

The partner keeps its keys: it books once per apply key (a repeat answers the same booking),
refuses what the business answer says, remembers a cancellation that comes first and refuses
that booking then. Its books are the step's ledger (bookings made, bookings cancelled), so the
invariants on effects hold for calling steps too; `violations` adds theirs.

Tries are bounded: the simulated `max_attempts` is at most `SIMULATED_MAX_ATTEMPTS` (the
decisions compare `calls >= max_attempts`, so the abandon path is the same after 2 tries as
after 8, and within reach of the exhaustive search's 2 faults). Worker work counts as in
flight: a timer that fires while it waits is a `delay`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

from sagaline.domain.call_decisions import (
    Abandon,
    Absorb,
    AwaitCall,
    CallPhase,
    ForgetCall,
    OweUndo,
    abandoned_reason,
    idempotency_key,
    on_call_command,
    on_call_compensation,
    on_call_result,
    on_failed_try,
)
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.engine import SagaStatus
from sagaline.domain.participant_decisions import (
    Compensate,
    OutcomeStatus,
    Repeat,
    applied_status,
    on_compensation,
)
from sagaline.simulation.actors import Actors, RecordedOutcome
from sagaline.simulation.model import Model
from sagaline.simulation.network import Msg, Outputs

SIMULATED_MAX_ATTEMPTS = 2
SAGA = "saga"  # the one saga simulated: its id in the idempotency keys
WORKER_FAULTS = ("call_timeout", "worker_crash")
WORKER_KINDS = frozenset({"call", "record", "partner", *WORKER_FAULTS})


def calling_steps(
    definition: SagaDefinition, override: Iterable[str] | None = None
) -> dict[str, int]:
    """The calling steps of `definition` and their simulated `max_attempts`: those named by
    `override` if given (each with the bound), else each step whose declaration imports and
    is a `sagaline.sdk.Step` with `calls=` (a declaration that does not import: transactional)."""
    names = definition.step_names
    if override is not None:
        chosen = [name for name in override if name]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ValueError(f"--calling-steps: no step {', '.join(unknown)} in {names}")
        return {name: SIMULATED_MAX_ATTEMPTS for name in names if name in chosen}
    from sagaline.sdk import Step  # imported only when a declaration is read

    found: dict[str, int] = {}
    for step in definition.spec.steps:
        if step.declaration is None:
            continue
        module_name, _, attribute = step.declaration.partition(":")
        try:
            declared: object = importlib.import_module(module_name)
            for part in attribute.split("."):
                declared = getattr(declared, part)
        except (ImportError, AttributeError):
            continue
        if isinstance(declared, Step) and declared.calls is not None:
            found[step.name] = min(declared.calls.max_attempts, SIMULATED_MAX_ATTEMPTS)
    return found


def apply_key(step: str, calls: int) -> str:
    """The key of the `calls`-th try of a step's apply: the same on every try."""
    return idempotency_key(SAGA, step, "apply")


class Owed(NamedTuple):
    """A `step_call` row: the phase, the tries started, a waiting compensation's attempt and
    the attempt the reply echoes."""

    phase: CallPhase
    calls: int
    compensation_attempt: int | None
    attempt: int


class Try(NamedTuple):
    """A try made, its answer at the worker, not recorded yet."""

    phase: CallPhase
    calls: int
    applied: bool


class Booking(StrEnum):
    BOOKED = "booked"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    VOID = "cancelled-before-booking"  # a booking of that key is refused


Books = tuple[tuple[str, Booking], ...]  # a partner's bookings by key, in key order


class Calls(Actors):
    """The owed calls, the workers' tries, the requests on their way to the partners and the
    partners' books, for the calling steps (`Model.calling`)."""

    __slots__ = ("books", "late", "owed", "tries")

    def __init__(self, model: Model, *, trace: bool) -> None:
        super().__init__(model, trace=trace)
        self.owed: dict[str, Owed | None] = {step: None for step in model.calling}
        self.tries: dict[str, Try | None] = {step: None for step in model.calling}
        self.late: dict[str, tuple[tuple[CallPhase, str], ...]] = {s: () for s in model.calling}
        self.books: dict[str, Books] = {step: () for step in model.calling}

    # -- what the workers can do ------------------------------------------------------------------

    def busy(self) -> bool:
        """Messages in flight, or work for a worker or a partner."""
        return bool(self.net) or any(self.work(step) for step in self.m.calling)

    def work(self, step: str, faults: bool = False) -> list[tuple[str, str]]:
        """What `step`'s worker and partner can do now: (kind, step) choices."""
        acts = []
        if self.tries[step] is not None:
            acts.append(("record", step))
            if faults:
                acts.append(("worker_crash", step))
        elif self.owed[step] is not None:
            acts.append(("call", step))
            if faults:
                acts.append(("call_timeout", step))
        if self.late[step]:
            acts.append(("partner", step))
        return acts

    def _work(self, kind: str, step: str) -> None:
        """Do one worker's or partner's choice (one `work` offers now)."""
        if kind == "record":
            self._commit(step, self._record(step))
        elif kind == "worker_crash":
            self.tries[step] = None
            self._note(f"{step}'s worker restarts before its record: the call is due again")
        elif kind == "partner":
            (phase, key), *rest = self.late[step]
            self.late[step] = tuple(rest)
            self._partner(step, phase, key)
            self._note(f"{step}'s partner takes a late {phase.lower()} ({key})")
        else:
            self._call(step, timeout=kind == "call_timeout")
            if self.trace is not None:
                self._note(self.summary())

    def _call(self, step: str, *, timeout: bool) -> None:
        owed = self.owed[step]
        assert owed is not None
        calls = owed.calls + 1
        owed = self.owed[step] = owed._replace(calls=calls)
        key = apply_key(step, calls)
        if timeout:
            self.late[step] = (*self.late[step], (owed.phase, key))
            decision = on_failed_try(owed.phase, calls, self.m.calling[step])
            if isinstance(decision, Abandon):
                self.owed[step] = owed._replace(phase=CallPhase.ABANDON, calls=0)
            self._note(f"{step}'s {owed.phase.lower()} try {calls} times out: {decision}")
            return
        applied = self._partner(step, owed.phase, key)
        self.tries[step] = Try(owed.phase, calls, applied)
        self._note(f"{step} calls its partner ({owed.phase.lower()} {key}, try {calls})")

    def _partner(self, step: str, phase: CallPhase, key: str) -> bool:
        """The partner takes a request: a booking (True if it stands) or a cancellation."""
        books = dict(self.books[step])
        known = books.get(key)
        if phase is CallPhase.APPLY:
            if known is None:
                known = Booking.BOOKED if self.m.accepts[step] else Booking.REFUSED
            elif known is Booking.VOID:
                known = Booking.REFUSED
            books[key] = known
        elif known is None:
            books[key] = Booking.VOID
        elif known is Booking.BOOKED:
            books[key] = Booking.CANCELLED
        self.books[step] = tuple(sorted(books.items()))
        made = sum(b in (Booking.BOOKED, Booking.CANCELLED) for b in books.values())
        self.ledger[step] = (made, sum(b is Booking.CANCELLED for b in books.values()))
        return phase is CallPhase.APPLY and known is Booking.BOOKED

    def _record(self, step: str) -> Outputs:
        done, owed = self.tries[step], self.owed[step]
        assert done is not None
        self.tries[step] = None
        if owed is None or (owed.phase, owed.calls) != (done.phase, done.calls):
            return []  # the claim was taken over: the new claim records
        topics, types = self.m.topics[step], self.m.types[step]
        waiting = owed.compensation_attempt
        recording = on_call_result(done.phase, done.applied, waiting)
        out: Outputs = []
        if recording.result:
            attempt = owed.attempt
            if done.applied:
                reply = Msg(f"{types.done}#{attempt}", types.done, step, attempt)
            else:
                reason = "rejected"
                if done.phase is CallPhase.ABANDON:
                    reason = abandoned_reason(self.m.calling[step], "timed out")
                reply = Msg(f"{types.failed}#{attempt}", types.failed, step, attempt, reason)
            self.outcomes[step] = RecordedOutcome(applied_status(done.applied), reply)
            out.append((topics.success if done.applied else topics.dlt, reply))
        if recording.undo_next:
            self.owed[step] = owed._replace(phase=CallPhase.UNDO, calls=0)
            return out
        if recording.acknowledge:
            assert waiting is not None
            outcome = self.outcomes[step]
            decision = on_compensation(outcome)
            assert isinstance(decision, Compensate)
            out += self._acknowledge(step, outcome, decision, waiting)
        self.owed[step] = None
        return out

    # -- the consumer of a calling step -----------------------------------------------------------

    def _participant(self, step: str, topic: str, msg: Msg) -> Outputs:
        if step not in self.m.calling:
            return super()._participant(step, topic, msg)
        topics = self.m.topics[step]
        outcome, owed, attempt = self.outcomes[step], self.owed[step], msg.attempt
        if topic == topics.command:
            recorded = self._answer_recorded(step, msg)
            if recorded is not None:
                return recorded
            if not isinstance(on_call_command(owed), Absorb):
                self.owed[step] = Owed(CallPhase.APPLY, 0, None, attempt)
            return []
        choice = on_call_compensation(outcome, owed)
        if isinstance(choice, Repeat):
            return [(topics.success, choice.reply)]
        if isinstance(choice, ForgetCall):
            self.owed[step] = None
            return self._acknowledge(step, outcome, choice.compensate, attempt)
        if isinstance(choice, AwaitCall):
            assert owed is not None
            self.owed[step] = owed._replace(compensation_attempt=attempt)
        elif isinstance(choice, OweUndo):
            self.owed[step] = Owed(CallPhase.UNDO, 0, attempt, attempt)
        elif isinstance(choice, Compensate):
            return self._acknowledge(step, outcome, choice, attempt)
        return []

    def _acknowledge(
        self, step: str, outcome: RecordedOutcome | None, choice: Compensate, attempt: int
    ) -> Outputs:
        """Record and send a compensation's acknowledgement (a tombstone if nothing came)."""
        types = self.m.types[step]
        if choice.tombstone or outcome is None:
            outcome = RecordedOutcome(OutcomeStatus.TOMBSTONE)
        ack = Msg(f"{types.compensated}#{attempt}", types.compensated, step, attempt, choice.effect)
        self.outcomes[step] = outcome._replace(compensation_reply=ack)
        return [(self.m.topics[step].success, ack)]

    # -- the invariants of calling steps ----------------------------------------------------------

    def call_violations(self) -> list[str]:
        """At the end of a schedule: booked at most once, no call left owed, and the bookings
        standing as the saga ended (all if COMPLETED, none if compensated)."""
        found = []
        for step, books in self.books.items():
            made = sum(b in (Booking.BOOKED, Booking.CANCELLED) for _, b in books)
            if made > 1:
                found.append(f"booked twice: {step} booked {made} times at its partner")
        saga = self.saga
        for step, books in self.books.items():
            if self.owed[step] is not None or self.tries[step] is not None or self.late[step]:
                found.append(f"owed call never ends: {step} ({self.owed[step]})")
            if saga is None or not saga.status.terminal:
                continue
            standing = sum(b is Booking.BOOKED for _, b in books)
            if saga.status is SagaStatus.COMPLETED and standing != 1:
                found.append(f"completed saga without its booking: {step} ({standing} standing)")
            if saga.status is not SagaStatus.COMPLETED and standing:
                found.append(f"booking standing after compensation: {step} ({saga.status})")
        return found
