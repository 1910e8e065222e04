"""A saga step's participant: exactly-once effects over at-least-once delivery.

The outcome of a command is recorded per saga, with the reply that was sent. A repeated command
(a re-send after a timeout) gets the ORIGINAL reply again, never a second effect. A compensation
undoes an applied effect once; one that arrives before its command leaves a tombstone, and the
late command is then refused. Every compensation is acknowledged with `<step>.compensated`.
The decisions are pure (`sagaline.domain.participant_decisions`); this module loads and stores
the outcome rows around them and runs the business effect.
"""

from __future__ import annotations

import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import JSON, Column, Table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from sagaline.delivery import outbox
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.dead_letter import describe
from sagaline.delivery.errors import Unprocessable
from sagaline.domain.clock import utcnow
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.envelope import Envelope
from sagaline.domain.messages import StepTypes
from sagaline.domain.participant_decisions import (
    Compensate,
    OutcomeStatus,
    Refuse,
    Repeat,
    applied_status,
    on_command,
    on_compensation,
)
from sagaline.storage.db import append, batch_cache, select_locked_into, update_later
from sagaline.storage.tables import status_type, table_of

__all__ = [
    "Applied",
    "Batch",
    "OutcomeRow",
    "OutcomeStatus",
    "Participant",
    "Rejected",
    "StepOutcome",
]
_BATCH = "participant_batch"


class StepOutcome(SQLModel, table=True):
    __tablename__ = "step_outcome"

    saga_id: uuid.UUID = Field(primary_key=True)
    status: OutcomeStatus = Field(sa_type=status_type(OutcomeStatus))
    reason: str | None = Field(default=None, max_length=500)
    reply: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    compensation_reply: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    updated_at: datetime = Field(default_factory=utcnow)


OUTCOMES: Table = table_of(StepOutcome)


@dataclass
class OutcomeRow:
    """A `step_outcome` row as the hot path holds it (the table's ORM class is for the API)."""

    row: dict[str, Any]

    @property
    def status(self) -> OutcomeStatus:
        return OutcomeStatus(self.row["status"])

    @property
    def reply(self) -> dict[str, Any] | None:
        reply: dict[str, Any] | None = self.row["reply"]
        return reply

    @property
    def compensation_reply(self) -> dict[str, Any] | None:
        reply: dict[str, Any] | None = self.row["compensation_reply"]
        return reply

    @property
    def result(self) -> dict[str, Any] | None:
        """What the applied effect returned (the payload of its reply); None if not applied."""
        if self.status is not OutcomeStatus.APPLIED or self.reply is None:
            return None
        payload: dict[str, Any] = self.reply.get("payload") or {}
        return payload


@dataclass(frozen=True)
class Applied:
    result: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass
class Batch:
    """What one transaction of a participant read (and locked) and what it will write.

    Rows are plain dicts, read with SQLAlchemy Core and written with a few executemany
    statements when the handlers are done (`append` for new rows, `update_later` for changed
    ones): an ORM unit of work cost more than the statements themselves."""

    session: AsyncSession
    commands: dict[uuid.UUID, BaseModel] = field(default_factory=dict)  # parsed, by message id
    outcomes: dict[uuid.UUID, dict[str, Any] | None] = field(default_factory=dict)  # rows

    def cache(self, name: str) -> dict[Any, Any]:
        """The subclass's rows of one table, by key, for this transaction."""
        return batch_cache(self.session, name)

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        append(self.session, table, [row])

    def update(
        self, table: Table, row: dict[str, Any], *, key: tuple[str, ...], columns: tuple[str, ...]
    ) -> None:
        update_later(self.session, table, row, key=key, columns=columns)


class Participant(ABC):
    """A consumer-loop handler for one step; subclasses supply the business effect."""

    step: str
    command_payload: type[BaseModel]

    def __init__(self, definition: SagaDefinition) -> None:
        self.definition = definition
        self.name = self.step
        self.types = StepTypes(self.step)
        self.topic = definition.saga_topics.step(self.step)
        self.topics = [self.topic.command, self.topic.compensation]

    @abstractmethod
    async def load(
        self, batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        """Lock and load the rows this batch's commands and compensations will change."""

    @abstractmethod
    async def apply(self, batch: Batch, saga_id: uuid.UUID, command: Any) -> Applied | Rejected:
        """Apply the effect to the loaded rows, or reject it without changing anything."""

    @abstractmethod
    async def undo(self, batch: Batch, saga_id: uuid.UUID, result: dict[str, Any] | None) -> None:
        """Undo an applied effect on the loaded rows; `result` is what `apply` returned."""

    # -- Handler protocol -------------------------------------------------------------------------

    def dead_letter_topic(self, source_topic: str) -> str:
        return self.topic.dlt

    def reads_dead_letters(self, topic: str) -> bool:
        return False

    def check(self, topic: str, envelope: Envelope) -> None:
        expected = self.types.command if topic == self.topic.command else self.types.compensate
        if envelope.type != expected:
            raise Unprocessable(
                f"unexpected type {envelope.type!r} on {topic}, expected {expected!r}"
            )
        if envelope.saga != self.definition.name:
            raise Unprocessable(f"unknown saga {envelope.saga!r}")

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        state = _batch(session)
        commands: dict[uuid.UUID, Any] = {}
        compensations: set[uuid.UUID] = set()
        for message in batch:
            envelope = message.envelope
            if envelope is None:
                continue
            if message.topic == self.topic.command:
                with contextlib.suppress(ValidationError):
                    command = self.command_payload.model_validate(envelope.payload)
                    state.commands[envelope.id] = commands[envelope.saga_id] = command
            else:
                compensations.add(envelope.saga_id)
        await self._load_outcomes(state, set(commands) | compensations)
        await self.load(state, commands, compensations)

    async def _load_outcomes(self, batch: Batch, saga_ids: set[uuid.UUID]) -> None:
        await select_locked_into(batch.session, OUTCOMES, "saga_id", saga_ids, batch.outcomes)

    async def _outcome(self, batch: Batch, saga_id: uuid.UUID) -> OutcomeRow | None:
        await self._load_outcomes(batch, {saga_id})
        row = batch.outcomes[saga_id]
        return None if row is None else OutcomeRow(row)

    def _record(self, batch: Batch, saga_id: uuid.UUID, **values: Any) -> OutcomeRow:
        """A new outcome row for the saga, inserted when the transaction ends."""
        row = {"saga_id": saga_id, "reason": None, "reply": None, "compensation_reply": None}
        row = batch.outcomes[saga_id] = {**row, **values, "updated_at": utcnow()}
        batch.insert(OUTCOMES, row)
        return OutcomeRow(row)

    async def handle(self, session: AsyncSession, message: Incoming) -> None:
        envelope = message.envelope
        assert envelope is not None
        batch = _batch(session)
        if message.topic == self.topic.command:
            await self._on_command(batch, envelope)
        else:
            await self._on_compensate(batch, envelope)

    # -- the protocol -----------------------------------------------------------------------------

    async def _on_command(self, batch: Batch, envelope: Envelope) -> None:
        command = batch.commands.get(envelope.id)
        if command is None:  # prepare could not read it either: say why
            try:
                command = self.command_payload.model_validate(envelope.payload)
            except ValidationError as exc:
                raise Unprocessable(f"invalid {envelope.type} payload: {describe(exc)}") from exc
        outcome = await self._outcome(batch, envelope.saga_id)
        decision = on_command(outcome)
        if isinstance(decision, Refuse):
            self._reply(batch, self._failure(envelope, decision.reason))
            return
        if isinstance(decision, Repeat):
            self._reply(batch, Envelope.model_validate(decision.reply))  # the original outcome
            return
        await self._attempt(batch, envelope, command)

    async def _attempt(self, batch: Batch, request: Envelope, command: Any) -> None:
        """Try the command's effect now, in the consumer's transaction, and record it."""
        self._record_result(batch, request, await self.apply(batch, request.saga_id, command))

    def _record_result(self, batch: Batch, request: Envelope, result: Applied | Rejected) -> None:
        """Record the command's outcome with its reply, and send the reply."""
        if isinstance(result, Applied):
            reply = self._response(request, self.types.done, result.result)
            reason = None
        else:
            reply = self._failure(request, result.reason)
            reason = result.reason
        self._record(
            batch,
            request.saga_id,
            status=applied_status(isinstance(result, Applied)),
            reason=reason,
            reply=reply.model_dump(mode="json"),
        )
        self._reply(batch, reply)

    async def _on_compensate(self, batch: Batch, envelope: Envelope) -> None:
        outcome = await self._outcome(batch, envelope.saga_id)
        decision: Repeat[dict[str, Any]] | Compensate = on_compensation(outcome)
        if isinstance(decision, Repeat):
            self._reply(batch, Envelope.model_validate(decision.reply))
            return
        if decision.undo:
            assert outcome is not None
            await self.undo(batch, envelope.saga_id, outcome.result)
        self._record_compensation(batch, envelope, outcome, decision)

    def _record_compensation(
        self, batch: Batch, request: Envelope, outcome: OutcomeRow | None, decision: Compensate
    ) -> None:
        """Record the compensation's acknowledgement (a tombstone first if no command came),
        and send it."""
        if decision.tombstone or outcome is None:
            outcome = self._record(batch, request.saga_id, status=OutcomeStatus.TOMBSTONE)
        else:
            columns = ("compensation_reply", "updated_at")
            batch.update(OUTCOMES, outcome.row, key=("saga_id",), columns=columns)
        reply = self._response(request, self.types.compensated, {"effect": decision.effect})
        outcome.row.update(compensation_reply=reply.model_dump(mode="json"), updated_at=utcnow())
        self._reply(batch, reply)

    def _response(self, request: Envelope, type_: str, payload: dict[str, Any]) -> Envelope:
        return Envelope(
            type=type_,
            saga_id=request.saga_id,
            saga=request.saga,
            step=self.step,
            attempt=request.attempt,
            payload=payload,
        )

    def _failure(self, request: Envelope, reason: str) -> Envelope:
        return self._response(request, self.types.failed, {"reason": reason})

    def _reply(self, batch: Batch, reply: Envelope) -> None:
        topic = self.topic.dlt if reply.type == self.types.failed else self.topic.success
        outbox.send(batch.session, topic, [reply])


def _batch(session: AsyncSession) -> Batch:
    """The participant's state for the session's transaction."""
    state: Batch | None = session.info.get(_BATCH)
    if state is None:
        state = session.info[_BATCH] = Batch(session)
    return state
