"""A step, declared in a few lines: its name, its command's model, and `apply` and `undo` as
ordinary async functions. sagaline supplies the rest (inbox, outbox, one outcome per saga,
repeated replies, the tombstone when compensation comes first); see docs/your-own-saga.md.

A step is transactional unless it names a `CallPolicy`: its `apply` and `undo` then run inside
the consumer's transaction, with the step's own tables, and must not call out. With `calls=`
they run with no transaction open and may call the outside world, each with a stable
idempotency key (`sagaline.delivery.calling_participant` keeps them exactly once in effect).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel

from sagaline.delivery.calling_participant import CallingParticipant
from sagaline.delivery.participant import Applied, Batch, Participant, Rejected
from sagaline.delivery.step_calls import CallPolicy, idempotency_key
from sagaline.domain.definition import NAME_PATTERN, SagaDefinition
from sagaline.registration import DEFAULT_PORT, Parts, Role, ServicePlugin
from sagaline.sdk.context import CallContext, SharedPool, StepContext, keyed_client
from sagaline.settings import Settings

CommandT = TypeVar("CommandT", bound=BaseModel)
Result = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class Step(Generic[CommandT]):
    """One step of a saga. Decorate its `apply` and `undo` (and, for a transactional step that
    locks rows per batch, its `load`); name the object in an entry point of the group
    `sagaline.services`, or with `--step module:object`."""

    def __init__(
        self,
        name: str,
        *,
        command: type[CommandT],
        calls: CallPolicy | None = None,
        router: APIRouter | None = None,
        migrations: Path | str | None = None,
        port: int = DEFAULT_PORT,
    ) -> None:
        if re.fullmatch(NAME_PATTERN, name) is None:
            raise ValueError(f"step name {name!r} does not match {NAME_PATTERN}")
        if not (isinstance(command, type) and issubclass(command, BaseModel)):
            raise TypeError(f"command must be a pydantic model class, not {command!r}")
        self.name = name
        self.command = command
        self.calls = calls
        self.router = router
        self.migrations = Path(migrations) if migrations is not None else None
        self.port = port
        self.apply_function: Callable[..., Awaitable[Result | Rejected]] | None = None
        self.undo_function: Callable[..., Awaitable[None]] | None = None
        self.load_function: Callable[..., Awaitable[None]] | None = None
        self.pool = SharedPool()

    def __repr__(self) -> str:
        kind = "calling" if self.calls is not None else "transactional"
        return f"Step({self.name!r}, {kind})"

    # -- decorators -------------------------------------------------------------------------------

    def apply(self, function: F) -> F:
        """`async def apply(ctx, command) -> dict | Rejected`: the effect, or a refusal."""
        self.apply_function = function
        return function

    def undo(self, function: F) -> F:
        """`async def undo(ctx, result) -> None`: undo the effect `apply` returned `result` for
        (None when a calling step's apply was abandoned: undo by `ctx.apply_key`)."""
        self.undo_function = function
        return function

    def load(self, function: F) -> F:
        """`async def load(batch, commands, compensations) -> None` (transactional steps): lock
        and read, once per batch, the rows the batch's commands and compensations will change."""
        if self.calls is not None:
            raise TypeError(f"step {self.name}: a calling step has no rows to load")
        self.load_function = function
        return function

    # -- what sagaline runs -----------------------------------------------------------------------

    def participant(self, definition: SagaDefinition, settings: Settings) -> Participant:
        if self.apply_function is None or self.undo_function is None:
            missing = "apply" if self.apply_function is None else "undo"
            raise TypeError(f"step {self.name} has no {missing}: decorate one with @step.{missing}")
        if self.calls is not None:
            return _CallingStep(self, definition, self.calls, settings.timer_interval_s)
        return _TransactionalStep(self, definition)

    def service_plugin(self) -> ServicePlugin:
        """The declaration `sagaline serve|relay|migrate` run."""
        routers = [self.router] if self.router is not None else []

        def assemble(definition: SagaDefinition, settings: Settings) -> Parts:
            participant = self.participant(definition, settings)
            return Parts(participant, list(routers), list(getattr(participant, "jobs", [])))

        return ServicePlugin(
            name=self.name,
            role=Role.STEP,
            assemble=assemble,
            migrations=self.migrations,
            port=self.port,
        )


def _outcome(result: Result | Rejected, step: str) -> Applied | Rejected:
    if isinstance(result, Rejected):
        return result
    if not isinstance(result, dict):
        raise TypeError(f"step {step}: apply returned {type(result).__name__}, not dict | Rejected")
    return Applied(result)


class _TransactionalStep(Participant):
    def __init__(self, spec: Step[Any], definition: SagaDefinition) -> None:
        self.step = spec.name
        self.command_payload = spec.command
        self.spec = spec
        super().__init__(definition)

    async def load(
        self, batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        if self.spec.load_function is not None:
            await self.spec.load_function(batch, commands, compensations)

    async def apply(self, batch: Batch, saga_id: uuid.UUID, command: Any) -> Applied | Rejected:
        assert self.spec.apply_function is not None
        context = StepContext(saga_id, self.step, batch)
        return _outcome(await self.spec.apply_function(context, command), self.step)

    async def undo(self, batch: Batch, saga_id: uuid.UUID, result: Result | None) -> None:
        assert self.spec.undo_function is not None
        await self.spec.undo_function(StepContext(saga_id, self.step, batch), result)


class _CallingStep(CallingParticipant):
    def __init__(
        self, spec: Step[Any], definition: SagaDefinition, policy: CallPolicy, idle_wait_s: float
    ) -> None:
        self.step = spec.name
        self.command_payload = spec.command
        self.spec = spec
        super().__init__(definition, policy, idle_wait_s)

    def _context(self, saga_id: uuid.UUID, phase: str, tries: int) -> CallContext:
        key = idempotency_key(saga_id, self.step, phase)
        assert self.spec.calls is not None
        return CallContext(
            saga_id=saga_id,
            step=self.step,
            idempotency_key=key,
            apply_key=idempotency_key(saga_id, self.step, "apply"),
            tries=tries,
            http=keyed_client(self.spec.pool, key, self.spec.calls.timeout_seconds),
        )

    async def call_apply(self, saga_id: uuid.UUID, command: Any, calls: int) -> Applied | Rejected:
        assert self.spec.apply_function is not None
        context = self._context(saga_id, "apply", calls)
        async with context.http:
            return _outcome(await self.spec.apply_function(context, command), self.step)

    async def call_undo(self, saga_id: uuid.UUID, result: Result | None, calls: int) -> None:
        assert self.spec.undo_function is not None
        context = self._context(saga_id, "undo", calls)
        async with context.http:
            await self.spec.undo_function(context, result)
