"""A participant whose effect is a call to the outside world, exactly once in effect.

The consumer's transaction only records what is owed (`sagaline.delivery.step_calls`); a
worker makes each call with no transaction open and records its result, and the reply, in a
transaction of its own. The participant's rules stay those of every step
(`sagaline.domain.participant_decisions`): one outcome per saga, repeated replies, a tombstone
when the compensation comes first. What the wait for a call adds:

- a command whose call is still owed is absorbed: its reply comes when the call is recorded;
- a compensation that comes while the command's call is owed, before any try started, leaves a
  tombstone at once (nothing was called); after a try started, it waits for the result, then
  undoes an applied effect;
- the undo of an applied effect is itself a call, made and recorded the same way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from abc import abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery.dead_letter import describe
from sagaline.delivery.participant import (
    Applied,
    Batch,
    Participant,
    Rejected,
    _batch,
)
from sagaline.delivery.step_calls import STEP_CALLS, CallPolicy
from sagaline.domain.call_decisions import (
    Abandon,
    AwaitCall,
    CallPhase,
    ForgetCall,
    OweApply,
    OweUndo,
    abandoned_reason,
    on_call_command,
    on_call_compensation,
    on_call_result,
    on_failed_try,
)
from sagaline.domain.clock import utcnow
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.envelope import Envelope
from sagaline.domain.participant_decisions import (
    Compensate,
    Repeat,
    on_compensation,
)
from sagaline.storage.db import Database, after_commit, select_locked_into

log = logging.getLogger(__name__)
_CALLS = "step_calls"


@dataclass(frozen=True)
class Claimed:
    """A call claimed by this worker: the row as it was when claimed (`calls` is the token)."""

    saga_id: uuid.UUID
    saga: str
    attempt: int
    command: dict[str, Any]
    phase: CallPhase
    calls: int
    compensation_attempt: int | None
    last_error: str | None

    def request(self, type_: str, step: str, attempt: int | None = None) -> Envelope:
        """The request (of type `type_`) a reply answers: its saga, step and attempt."""
        return Envelope(
            type=type_,
            saga_id=self.saga_id,
            saga=self.saga,
            step=step,
            attempt=self.attempt if attempt is None else attempt,
        )


class CallingParticipant(Participant):
    """A step whose `call_apply` and `call_undo` may call out; subclasses supply them."""

    def __init__(
        self, definition: SagaDefinition, policy: CallPolicy, idle_wait_s: float = 0.25
    ) -> None:
        super().__init__(definition)
        self.policy = policy
        self.idle_wait_s = idle_wait_s  # how long the worker waits for a wake-up between looks
        self._wake = asyncio.Event()
        self.jobs = [self.run_due_calls]

    @abstractmethod
    async def call_apply(self, saga_id: uuid.UUID, command: Any, calls: int) -> Applied | Rejected:
        """One try of the command's call (`calls` from 1); raising means "try again"."""

    @abstractmethod
    async def call_undo(
        self, saga_id: uuid.UUID, result: dict[str, Any] | None, calls: int
    ) -> None:
        """One try of the undo's call; `result` is None when the apply was abandoned."""

    # The effect lives outside: nothing to lock, apply or undo in the consumer's transaction.
    async def load(
        self, batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        await select_locked_into(
            batch.session, STEP_CALLS, "saga_id", set(commands) | compensations, _owed(batch)
        )

    async def apply(self, batch: Batch, saga_id: uuid.UUID, command: Any) -> Applied | Rejected:
        raise NotImplementedError("a calling step applies through call_apply")

    async def undo(self, batch: Batch, saga_id: uuid.UUID, result: dict[str, Any] | None) -> None:
        raise NotImplementedError("a calling step undoes through call_undo")

    # -- the consumer's side: record what is owed --------------------------------------------------

    async def _attempt(self, batch: Batch, request: Envelope, command: Any) -> None:
        owed = await self._owed_call(batch, request.saga_id)
        if not isinstance(on_call_command(None if owed is None else _Owed.of(owed)), OweApply):
            return  # a repeat of a command whose call is owed: its reply comes with the record
        row = {
            "saga_id": request.saga_id,
            "saga": request.saga,
            "attempt": request.attempt,
            "command": command.model_dump(mode="json"),
            "phase": CallPhase.APPLY,
            "calls": 0,
            "compensation_attempt": None,
            "due_at": utcnow(),
            "last_error": None,
            "created_at": utcnow(),
        }
        await self._owe(batch, row)

    async def _on_compensate(self, batch: Batch, envelope: Envelope) -> None:
        outcome = await self._outcome(batch, envelope.saga_id)
        owed = await self._owed_call(batch, envelope.saga_id)
        decision = on_call_compensation(outcome, None if owed is None else _Owed.of(owed))
        if isinstance(decision, Repeat):
            self._reply(batch, Envelope.model_validate(decision.reply))
        elif isinstance(decision, OweUndo):  # a call too: acknowledged when it is recorded
            await self._owe_undo(batch, envelope)
        elif isinstance(decision, ForgetCall):
            # No try has started (the row is locked: none can start now): nothing was called.
            await self._forget(batch.session, envelope.saga_id)
            self._record_compensation(batch, envelope, outcome, decision.compensate)
        elif isinstance(decision, AwaitCall):  # wait for the call, then compensate
            assert owed is not None
            owed["compensation_attempt"] = envelope.attempt
            await batch.session.execute(
                update(STEP_CALLS)
                .where(STEP_CALLS.c.saga_id == envelope.saga_id)
                .values(compensation_attempt=envelope.attempt)
            )
        elif isinstance(decision, Compensate):
            self._record_compensation(batch, envelope, outcome, decision)
        # Absorb: a compensation already waits for the call

    async def _owe_undo(self, batch: Batch, request: Envelope) -> None:
        row = {
            "saga_id": request.saga_id,
            "saga": request.saga,
            "attempt": request.attempt,
            "command": {},
            "phase": CallPhase.UNDO,
            "calls": 0,
            "compensation_attempt": request.attempt,
            "due_at": utcnow(),
            "last_error": None,
            "created_at": utcnow(),
        }
        await self._owe(batch, row)

    async def _owe(self, batch: Batch, row: dict[str, Any]) -> None:
        """Owe a call: inserted now (not with the batch's inserts at the end), so that a
        compensation later in the same batch can find it and forget it."""
        _owed(batch)[row["saga_id"]] = row
        await batch.session.execute(insert(STEP_CALLS).values(**row))
        after_commit(batch.session, self._wake.set)

    async def _owed_call(self, batch: Batch, saga_id: uuid.UUID) -> dict[str, Any] | None:
        owed = _owed(batch)
        await select_locked_into(batch.session, STEP_CALLS, "saga_id", {saga_id}, owed)
        row: dict[str, Any] | None = owed[saga_id]
        return row

    # -- the worker's side: make the calls, record their results ----------------------------------

    async def run_due_calls(self, db: Database) -> int:
        """A periodic job: claim the calls that are due and make them, concurrently. Woken at
        once when a transaction owes a new call; returns how many were made (plus one when it
        was woken, so that the job runs again at once)."""
        woken = False
        try:
            async with asyncio.timeout(self.idle_wait_s):
                await self._wake.wait()
                woken = True
        except TimeoutError:
            pass
        self._wake.clear()
        claimed = await self._claim(db)
        await asyncio.gather(*(self._make(db, call) for call in claimed))
        return len(claimed) + woken

    async def _claim(self, db: Database) -> list[Claimed]:
        now = utcnow()
        async with db.transaction() as session:
            due = (
                select(STEP_CALLS)
                .where(STEP_CALLS.c.due_at <= now)
                .order_by(STEP_CALLS.c.due_at)
                .limit(self.policy.concurrency)
                .with_for_update(skip_locked=True)
            )
            rows = [dict(row) for row in (await session.execute(due)).mappings()]
            claimed = []
            lease = now + timedelta(seconds=self.policy.lease_s())
            for row in rows:
                calls = row["calls"] + 1
                await session.execute(
                    update(STEP_CALLS)
                    .where(STEP_CALLS.c.saga_id == row["saga_id"])
                    .values(calls=calls, due_at=lease)
                )
                claimed.append(
                    Claimed(
                        saga_id=row["saga_id"],
                        saga=row["saga"],
                        attempt=row["attempt"],
                        command=row["command"],
                        phase=CallPhase(row["phase"]),
                        calls=calls,
                        compensation_attempt=row["compensation_attempt"],
                        last_error=row["last_error"],
                    )
                )
            return claimed

    async def _make(self, db: Database, call: Claimed) -> None:
        try:
            async with asyncio.timeout(self.policy.timeout_seconds):
                if call.phase is CallPhase.APPLY:
                    result: Applied | Rejected | None = await self.call_apply(
                        call.saga_id, self.command_payload.model_validate(call.command), call.calls
                    )
                else:
                    result = None
                    undone = await self._result_for_undo(db, call)
                    await self.call_undo(call.saga_id, undone, call.calls)
        except ValidationError as exc:  # the stored command no longer reads: it never will
            await self._record_call(db, call, Rejected(f"invalid command: {describe(exc)}"))
        except Exception as exc:
            await self._failed_try(db, call, f"{type(exc).__name__}: {exc}"[:500])
        else:
            await self._record_call(db, call, result)

    async def _result_for_undo(self, db: Database, call: Claimed) -> dict[str, Any] | None:
        if call.phase is CallPhase.ABANDON:
            return None
        async with db.transaction() as session:
            outcome = await self._outcome(_batch(session), call.saga_id)
            return None if outcome is None else outcome.result

    async def _failed_try(self, db: Database, call: Claimed, error: str) -> None:
        log.warning("%s: saga %s: %s try %d failed: %s", self.step, call.saga_id,
                    call.phase.value.lower(), call.calls, error)  # fmt: skip
        decision = on_failed_try(call.phase, call.calls, self.policy.max_attempts)
        abandon = isinstance(decision, Abandon)
        values: dict[str, Any] = {"last_error": error}
        if abandon:  # cancel by the apply's key (its booking may stand), then report failure
            values.update(phase=CallPhase.ABANDON, calls=0, due_at=utcnow())
        else:
            values["due_at"] = utcnow() + timedelta(seconds=self.policy.backoff_s(call.calls))
        async with db.transaction() as session:
            await session.execute(update(STEP_CALLS).where(_claimed_by(call)).values(**values))
        if abandon:
            self._wake.set()

    async def _record_call(
        self, db: Database, call: Claimed, result: Applied | Rejected | None
    ) -> None:
        """Record a call's result with its reply, in one transaction, if the claim still holds
        (a worker that took the call over after the lease will record it instead)."""
        async with db.transaction() as session:
            batch = _batch(session)
            row = await self._still_claimed(batch, call)
            if row is None:
                return
            waiting: int | None = row["compensation_attempt"]  # read now: it may have come
            if call.phase is CallPhase.ABANDON:
                result = Rejected(abandoned_reason(self.policy.max_attempts, call.last_error))
            recording = on_call_result(call.phase, isinstance(result, Applied), waiting)
            if recording.result:
                assert result is not None
                self._record_result(batch, call.request(self.types.command, self.step), result)
            if recording.undo_next:  # undo it: owed as the next call
                await session.execute(
                    update(STEP_CALLS)
                    .where(STEP_CALLS.c.saga_id == call.saga_id)
                    .values(phase=CallPhase.UNDO, calls=0, due_at=utcnow(), last_error=None)
                )
                after_commit(session, self._wake.set)
                return
            if recording.acknowledge:
                await self._acknowledge(batch, call, waiting)
            await self._forget(session, call.saga_id)

    async def _acknowledge(self, batch: Batch, call: Claimed, attempt: int | None) -> None:
        """Record and send the compensation's acknowledgement, the outcome being recorded."""
        outcome = await self._outcome(batch, call.saga_id)
        decision: Repeat[Any] | Compensate = on_compensation(outcome)
        assert isinstance(decision, Compensate)
        request = call.request(self.types.compensate, self.step, attempt)
        self._record_compensation(batch, request, outcome, decision)

    async def _still_claimed(self, batch: Batch, call: Claimed) -> dict[str, Any] | None:
        rows = (await batch.session.execute(
            select(STEP_CALLS).where(_claimed_by(call)).with_for_update()
        )).mappings().all()  # fmt: skip
        return dict(rows[0]) if rows else None

    @staticmethod
    async def _forget(session: AsyncSession, saga_id: uuid.UUID) -> None:
        await session.execute(delete(STEP_CALLS).where(STEP_CALLS.c.saga_id == saga_id))
        _owed_of(session).pop(saga_id, None)


@dataclass(frozen=True)
class _Owed:
    """A `step_call` row, as the decisions read it."""

    phase: CallPhase
    calls: int
    compensation_attempt: int | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Owed:
        return cls(CallPhase(row["phase"]), row["calls"], row["compensation_attempt"])


def _claimed_by(call: Claimed) -> Any:
    return and_(STEP_CALLS.c.saga_id == call.saga_id, STEP_CALLS.c.calls == call.calls,
                STEP_CALLS.c.phase == call.phase)  # fmt: skip


def _owed(batch: Batch) -> dict[uuid.UUID, dict[str, Any] | None]:
    return _owed_of(batch.session)


def _owed_of(session: AsyncSession) -> dict[uuid.UUID, dict[str, Any] | None]:
    owed: dict[uuid.UUID, dict[str, Any] | None] = session.info.setdefault(_CALLS, {})
    return owed
