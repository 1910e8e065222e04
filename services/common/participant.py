"""A saga step's participant: exactly-once effects over at-least-once delivery.

The outcome of a command is recorded per saga, with the reply that was sent. A repeated command
(a re-send after a timeout) gets the ORIGINAL reply again, never a second effect. A compensation
undoes an applied effect once; one that arrives before its command leaves a tombstone, and the
late command is then refused. Every compensation is acknowledged with `<step>.compensated`.
The decisions are pure (`services.common.participant_decisions`); this module loads and stores
the outcome rows around them and runs the business effect.
"""

from __future__ import annotations

import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import JSON, Column
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from services.common import outbox
from services.common.clock import utcnow
from services.common.consumer import Incoming, describe
from services.common.db import batch_cache, load_locked
from services.common.definition import SagaDefinition
from services.common.envelope import Envelope
from services.common.errors import Unprocessable
from services.common.messages import StepTopics, StepTypes
from services.common.participant_decisions import (
    Compensate,
    OutcomeStatus,
    Refuse,
    Repeat,
    applied_status,
    on_command,
    on_compensation,
)
from services.common.tables import status_type

__all__ = ["Applied", "OutcomeStatus", "Participant", "Rejected", "StepOutcome"]


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


@dataclass(frozen=True)
class Applied:
    result: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    reason: str


class Participant(ABC):
    """A consumer-loop handler for one step; subclasses supply the business effect."""

    step: str
    command_payload: type[BaseModel]

    def __init__(self, definition: SagaDefinition) -> None:
        self.definition = definition
        self.name = self.step
        self.types = StepTypes(self.step)
        self.topic = StepTopics(self.step)
        self.topics = [self.topic.command, self.topic.compensation]

    @abstractmethod
    async def load(
        self, session: AsyncSession, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        """Lock and load the rows this batch's commands and compensations will change."""

    @abstractmethod
    def apply(self, session: AsyncSession, saga_id: uuid.UUID, command: Any) -> Applied | Rejected:
        """Apply the effect to the loaded rows, or reject it without changing anything."""

    @abstractmethod
    def undo(self, session: AsyncSession, saga_id: uuid.UUID) -> None:
        """Undo an applied effect on the loaded rows."""

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
        commands: dict[uuid.UUID, Any] = {}
        compensations: set[uuid.UUID] = set()
        parsed = batch_cache(session, "commands")  # by message id, read again by _on_command
        for message in batch:
            envelope = message.envelope
            if envelope is None:
                continue
            if message.topic == self.topic.command:
                with contextlib.suppress(ValidationError):
                    command = self.command_payload.model_validate(envelope.payload)
                    parsed[envelope.id] = commands[envelope.saga_id] = command
            else:
                compensations.add(envelope.saga_id)
        outcomes = batch_cache(session, "outcomes")
        await load_locked(
            session, StepOutcome, StepOutcome.saga_id, set(commands) | compensations, outcomes
        )
        await self.load(session, commands, compensations)

    async def _outcome(self, session: AsyncSession, saga_id: uuid.UUID) -> StepOutcome | None:
        outcomes = batch_cache(session, "outcomes")
        await load_locked(session, StepOutcome, StepOutcome.saga_id, {saga_id}, outcomes)
        outcome: StepOutcome | None = outcomes[saga_id]
        return outcome

    def _remember(self, session: AsyncSession, outcome: StepOutcome) -> None:
        session.add(outcome)
        batch_cache(session, "outcomes")[outcome.saga_id] = outcome

    async def handle(self, session: AsyncSession, message: Incoming) -> None:
        envelope = message.envelope
        assert envelope is not None
        if message.topic == self.topic.command:
            await self._on_command(session, envelope)
        else:
            await self._on_compensate(session, envelope)

    # -- the protocol -----------------------------------------------------------------------------

    async def _on_command(self, session: AsyncSession, envelope: Envelope) -> None:
        command = batch_cache(session, "commands").get(envelope.id)
        if command is None:  # prepare could not read it either: say why
            try:
                command = self.command_payload.model_validate(envelope.payload)
            except ValidationError as exc:
                raise Unprocessable(f"invalid {envelope.type} payload: {describe(exc)}") from exc
        outcome = await self._outcome(session, envelope.saga_id)
        decision = on_command(outcome)
        if isinstance(decision, Refuse):
            self._reply(session, self._failure(envelope, decision.reason))
            return
        if isinstance(decision, Repeat):
            self._reply(session, Envelope.model_validate(decision.reply))  # the original outcome
            return
        result = self.apply(session, envelope.saga_id, command)
        if isinstance(result, Applied):
            reply = self._response(envelope, self.types.done, result.result)
            reason = None
        else:
            reply = self._failure(envelope, result.reason)
            reason = result.reason
        self._remember(
            session,
            StepOutcome(
                saga_id=envelope.saga_id,
                status=applied_status(isinstance(result, Applied)),
                reason=reason,
                reply=reply.model_dump(mode="json"),
            ),
        )
        self._reply(session, reply)

    async def _on_compensate(self, session: AsyncSession, envelope: Envelope) -> None:
        outcome = await self._outcome(session, envelope.saga_id)
        decision: Repeat[dict[str, Any]] | Compensate = on_compensation(outcome)
        if isinstance(decision, Repeat):
            self._reply(session, Envelope.model_validate(decision.reply))
            return
        if decision.tombstone or outcome is None:
            outcome = StepOutcome(saga_id=envelope.saga_id, status=OutcomeStatus.TOMBSTONE)
            self._remember(session, outcome)
        if decision.undo:
            self.undo(session, envelope.saga_id)
        reply = self._response(envelope, self.types.compensated, {"effect": decision.effect})
        outcome.compensation_reply = reply.model_dump(mode="json")
        outcome.updated_at = utcnow()
        self._reply(session, reply)

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

    def _reply(self, session: AsyncSession, reply: Envelope) -> None:
        topic = self.topic.dlt if reply.type == self.types.failed else self.topic.success
        outbox.send(session, topic, [reply])
