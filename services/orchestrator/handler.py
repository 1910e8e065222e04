"""The orchestrator: runs the engine on consumed replies and on the clock.

Every transition happens in one transaction that locks the saga row, saves the engine state,
records the history and writes the resulting commands to the outbox.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery import outbox
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.errors import Unprocessable, is_transient
from sagaline.domain.clock import from_epoch, utcnow
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.engine import (
    Action,
    Engine,
    Finish,
    ResendOutcome,
    SagaState,
    SagaStatus,
    SendCommand,
    SendCompensation,
)
from sagaline.domain.envelope import Envelope, header_value
from sagaline.domain.messages import (
    SAGA_CANCEL,
    SAGA_COMPENSATED,
    SAGA_COMPLETED,
    SAGA_FAILED,
    SAGA_START,
    StepTopics,
    StepTypes,
)
from sagaline.domain.versions import DefinitionVersion
from sagaline.services.orchestrator import stuck
from sagaline.services.orchestrator.models import Origin, Saga, SagaEvent
from sagaline.services.orchestrator.saga_metrics import SagasInFlight, saga_finished
from sagaline.services.orchestrator.step_data import command_payload, compensation_payload
from sagaline.services.orchestrator.versions import Versions, in_flight, register
from sagaline.services.orchestrator.waiters import EndWaiters
from sagaline.storage.db import (
    Database,
    after_commit,
    append,
    batch_cache,
    queued_mark,
    select_locked_into,
    update_later,
)
from sagaline.storage.tables import table_of
from sagaline.telemetry import tracing
from sagaline.telemetry.metrics import RESENDS

OUTCOME_TYPES = {
    SagaStatus.COMPLETED: SAGA_COMPLETED,
    SagaStatus.COMPENSATED: SAGA_COMPENSATED,
    SagaStatus.FAILED: SAGA_FAILED,
}
EVENTS: Table = table_of(SagaEvent)
SAGAS: Table = table_of(Saga)
# A saga row as the hot path holds it: a plain dict read with SQLAlchemy Core and written back,
# changed, by one executemany at the transaction's end (an ORM unit of work cost more than the
# statements; the ORM class serves the API's queries). `results` changes with most replies (each
# success adds its step's), so it is written with the rest rather than in a statement of its own.
SagaRow = dict[str, Any]
CHANGING = (
    "state",
    "status",
    "reason",
    "response",
    "results",
    "finished_at",
    "next_deadline",
    "updated_at",
    "failures",
)
_DUE = (
    select(SAGAS)
    .where(SAGAS.c.next_deadline <= bindparam("now"))
    .order_by(SAGAS.c.next_deadline)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_DUE_ONE = _DUE.where(SAGAS.c.id == bindparam("id"))
_DUE_IDS = (
    select(SAGAS.c.id)
    .where(SAGAS.c.next_deadline <= bindparam("now"))
    .order_by(SAGAS.c.next_deadline)
    .limit(bindparam("limit"))
)
Message = SendCommand | SendCompensation | Finish  # the actions that are new messages
log = logging.getLogger(__name__)


class Orchestrator:
    name = "orchestrator"

    def __init__(self, definition: SagaDefinition) -> None:
        self.definition = definition
        # Each saga runs on the version it started with; new sagas on this one, whose policy
        # gives every step its own time-out and attempts.
        self.version = DefinitionVersion.of(definition)
        self.policy = self.version.policy
        self.versions = Versions(self.version)
        self._registered = False  # whether this process has seen its version in the table
        self.saga_topics = definition.saga_topics
        # The steps whose replies this process consumes: the current definition's, and (from
        # `start`) those of the versions that sagas in flight still run on.
        self.steps: dict[str, StepTopics] = {}
        self.types: dict[str, StepTypes] = {}
        self._step_by_topic: dict[str, str] = {}
        self.topics = [self.saga_topics.orchestrator]
        self._consume_steps(definition.step_names)
        self.in_flight = SagasInFlight()
        self.ended = EndWaiters()  # the requests waiting for a saga's end (`Prefer: wait`)

    def _consume_steps(self, names: Sequence[str]) -> None:
        for name in names:
            if name in self.steps:
                continue
            topics = self.steps[name] = self.saga_topics.step(name)
            self.types[name] = StepTypes(name)
            self._step_by_topic[topics.success] = name
            self._step_by_topic[topics.dlt] = name
            self.topics += [topics.success, topics.dlt]

    async def start(self, db: Database) -> None:
        """Before the consumer subscribes: keep the current version in the table, and consume
        the replies of every step that a saga in flight may still command or compensate (its
        version's steps). Read once: a changed Saga restarts the orchestrator (on Kubernetes
        the operator rolls its Deployment), so the versions in flight are read again then."""
        async with db.transaction() as session:
            await register(session, self.version)
            for version in await in_flight(session, self.definition.name):
                self._consume_steps(version.steps)
        self._registered = True

    async def _register(self, session: AsyncSession) -> None:
        """Keep the current version in the table before a saga is written with it (once per
        process once committed; `start` does it too)."""
        if not self._registered:
            await register(session, self.version)
            after_commit(session, functools.partial(setattr, self, "_registered", True))

    async def _load_versions(self, session: AsyncSession, digests: Iterable[str | None]) -> None:
        """Read the sagas' versions not read yet, and consume their steps' replies too: a
        version that was not in flight at `start` (a replica still on the old definition
        started sagas on it during the rollout) is in use now. The consumer loop subscribes
        a new client when the topics grow."""
        for version in await self.versions.load(session, digests):
            self._consume_steps(version.step_names)

    def _version(self, saga: SagaRow) -> DefinitionVersion:
        return self.versions.of(saga.get("version"), saga["execution"])

    # -- Handler protocol -------------------------------------------------------------------------

    def dead_letter_topic(self, source_topic: str) -> str:
        return self.saga_topics.dlt

    def reads_dead_letters(self, topic: str) -> bool:
        return topic in self._step_by_topic and topic.endswith(".dlt")

    def check(self, topic: str, envelope: Envelope) -> None:
        if envelope.saga != self.definition.name:
            raise Unprocessable(f"unknown saga {envelope.saga!r}")
        if topic == self.saga_topics.orchestrator:
            expected = {SAGA_START, SAGA_CANCEL}
        else:
            step = self._step_by_topic[topic]
            types = self.types[step]
            expected = (
                {types.done, types.compensated} if topic.endswith(".success") else {types.failed}
            )
            if envelope.step != step:
                raise Unprocessable(f"step {envelope.step!r} on {topic}, expected {step!r}")
        if envelope.type not in expected:
            raise Unprocessable(f"unexpected type {envelope.type!r} on {topic}")

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        ids = {saga_id for m in batch if (saga_id := self._saga_id(m)) is not None}
        await _load(session, ids)
        sagas = batch_cache(session, "sagas")
        await self._load_versions(session, (sagas[i]["version"] for i in ids if sagas.get(i)))

    async def _saga(self, session: AsyncSession, saga_id: uuid.UUID) -> SagaRow | None:
        await _load(session, {saga_id})
        saga: SagaRow | None = batch_cache(session, "sagas")[saga_id]
        if saga is not None:
            await self._load_versions(session, [saga.get("version")])
        return saga

    # -- an operator's hands (services/orchestrator/interventions.py) -----------------------------

    async def locked_saga(self, session: AsyncSession, saga_id: uuid.UUID) -> SagaRow | None:
        """The saga's row, locked for the caller's transaction (None: no such saga)."""
        return await self._saga(session, saga_id)

    def engine_of(self, saga: SagaRow) -> Engine:
        return self._engine(saga)

    def apply(
        self, session: AsyncSession, saga: SagaRow, engine: Engine, actions: list[Action]
    ) -> None:
        """Save the engine's state on the row and turn its actions into outbox messages."""
        self._apply(session, saga, engine, actions)

    async def handle(self, session: AsyncSession, message: Incoming) -> None:
        """Apply one input. For a saga that exists its work is isolated: if it raises, it alone
        is undone (the batch goes on) and the input is parked for the saga's retry; a saga with
        failures parks its inputs, in order, without applying them (docs/design.md, "A stuck
        saga")."""
        saga_id = self._saga_id(message)
        saga = await self._saga(session, saga_id) if saga_id is not None else None
        topic, envelope = message.topic, message.envelope
        origin, reason = self._dead_letter_of(message)

        def park() -> None:
            assert saga is not None
            stuck.park(session, saga["id"], topic, envelope, origin=origin, reason=reason)

        if saga is None:  # a new saga's start, or a dead letter of no saga: nothing to isolate
            await self._dispatch(session, saga_id, topic, envelope, origin, reason)
        elif saga["failures"]:
            park()
        else:
            work = functools.partial(
                self._dispatch, session, saga_id, topic, envelope, origin, reason
            )
            await self.isolated(session, saga, work, park)

    async def keep_failed(self, session: AsyncSession, message: Incoming, exc: Exception) -> bool:
        """A message whose handling failed even alone (a database error the in-memory undo
        cannot isolate): parked with its saga, which counts the failure, instead of being
        dead-lettered. A message of no saga is not kept (`KeepsFailed`, in the consumer)."""
        saga_id = self._saga_id(message)
        saga = await self._saga(session, saga_id) if saga_id is not None else None
        if saga is None:
            return False
        origin, reason = self._dead_letter_of(message)
        stuck.park(
            session, saga["id"], message.topic, message.envelope, origin=origin, reason=reason
        )
        self._failed(session, saga, exc)
        return True

    async def _dispatch(
        self,
        session: AsyncSession,
        saga_id: uuid.UUID | None,
        topic: str,
        envelope: Envelope | None,
        origin: str | None,
        reason: str | None,
    ) -> None:
        if envelope is None:
            await self._on_dead_letter(session, saga_id, topic, origin, reason)
        elif envelope.type == SAGA_START:
            await self._on_start(session, envelope)
        elif envelope.type == SAGA_CANCEL:
            await self._on_cancel(session, envelope)
        else:
            await self._on_reply(session, topic, envelope)

    async def isolated(
        self,
        session: AsyncSession,
        saga: SagaRow,
        work: Callable[[], Awaitable[None]],
        on_failure: Callable[[], None] = lambda: None,
    ) -> bool:
        """Run one saga's `work` in the batch's transaction; if it raises, undo what it queued
        and its row's changes (no statement: every write of the hot path is queued), count the
        failure on the row and call `on_failure`; False then. A dead letter (`Unprocessable`)
        and a database error (which fails the whole transaction) are not isolated."""
        before = dict(saga)
        rollback = queued_mark(session)
        try:
            await work()
        except (Unprocessable, SQLAlchemyError):
            raise
        except Exception as exc:
            rollback()
            saga.clear()
            saga.update(before)
            self._failed(session, saga, exc)
            on_failure()
            return False
        return True

    def _failed(self, session: AsyncSession, saga: SagaRow, exc: BaseException) -> None:
        """One more failure in a row on the saga (docs/design.md, "A stuck saga")."""
        reason = stuck.failed(saga, exc, time.time(), self.name)
        append(session, EVENTS, [event_row(saga["id"], "failed", "error", None, 1, None, reason)])
        update_later(session, SAGAS, saga, key=("id",), columns=stuck.FAILURE_COLUMNS)
        stuck.count_failure(session, self.name)

    async def redrive(
        self, session: AsyncSession, saga: SagaRow, inputs: list[dict[str, Any]], now: float
    ) -> None:
        """A saga's due work: on a retry (it has failures) its parked inputs first, in order,
        then the clock."""
        if saga["failures"] or inputs:
            saga["failures"] = 0
            detail = f"re-driving {len(inputs)} parked input(s)"
            append(
                session, EVENTS, [event_row(saga["id"], "retried", "retry", None, 1, None, detail)]
            )
            for row in inputs:
                envelope = (
                    None if row["envelope"] is None else Envelope.model_validate(row["envelope"])
                )
                await self._dispatch(
                    session, saga["id"], row["topic"], envelope, row["origin"], row["reason"]
                )
        engine = self._engine(saga)
        actions = engine.tick(now)
        for action in actions:
            if isinstance(action, SendCommand | SendCompensation) and action.attempt > 1:
                after_commit(session, RESENDS.labels(self.name, type(action).__name__).inc)
        self._apply(session, saga, engine, actions)

    # -- inputs -----------------------------------------------------------------------------------

    async def start_requested(
        self, session: AsyncSession, saga_id: uuid.UUID, payload: dict[str, Any]
    ) -> tuple[SagaRow, bool]:
        """Start a saga asked for over HTTP (`POST /sagas`) in the caller's transaction: the row
        and its first commands in the outbox. A saga that exists is returned as it is; the
        flag says whether this call started it. Its outcome is sent to no topic."""
        saga = await self._saga(session, saga_id)
        if saga is not None:
            return saga, False
        await self._register(session)
        state = SagaState.new(list(self.version.step_names))
        saga = self._new_saga(session, saga_id, state.status, payload, origin=Origin.API)
        event = event_row(saga_id, "received", SAGA_START, None, 1, None, "POST /sagas")
        append(session, EVENTS, [event])
        engine = Engine(self.version.policy, state)
        self._apply(session, saga, engine, engine.start(time.time()))
        return saga, True

    async def _on_start(self, session: AsyncSession, envelope: Envelope) -> None:
        saga = await self._saga(session, envelope.saga_id)
        if saga is not None:
            record(session, saga["id"], "received", envelope, detail="repeated start")
            engine = self._engine(saga)
            self._apply(session, saga, engine, engine.repeated_start())
            return
        await self._register(session)
        state = SagaState.new(list(self.version.step_names))
        saga = self._new_saga(session, envelope.saga_id, state.status, envelope.payload)
        record(session, saga["id"], "received", envelope)
        engine = Engine(self.version.policy, state)
        self._apply(session, saga, engine, engine.start(time.time()))

    async def _on_cancel(self, session: AsyncSession, envelope: Envelope) -> None:
        """The initiator gave up its start; a saga never seen is recorded as cancelled (it
        answers a late start with that outcome)."""
        saga = await self._saga(session, envelope.saga_id)
        if saga is None:
            await self._register(session)
            saga = self._new_saga(session, envelope.saga_id, SagaStatus.RUNNING, {})
            engine = Engine(self.version.policy, SagaState.new(list(self.version.step_names)))
        else:
            engine = self._engine(saga)
        reason = str(envelope.payload.get("reason") or "cancelled by the initiator")[:500]
        record(session, saga["id"], "received", envelope, detail=reason)
        self._apply(session, saga, engine, engine.cancel(reason, time.time()))

    async def _on_reply(self, session: AsyncSession, topic: str, envelope: Envelope) -> None:
        saga = await self._saga(session, envelope.saga_id)
        if saga is None:
            raise Unprocessable(f"no saga {envelope.saga_id}")
        step = self._step_by_topic[topic]
        types = StepTypes(step)
        engine = self._engine(saga)
        _has_step(saga, engine, step)
        now = time.time()
        if envelope.type == types.done:
            _keep_result(saga, step, envelope.payload)
            actions = engine.succeeded(step, now)
            detail = None
        elif envelope.type == types.compensated:
            actions = engine.compensated(step, now)
            detail = str(envelope.payload.get("effect", "")) or None
        else:
            detail = str(envelope.payload.get("reason", "rejected"))
            actions = engine.failed(step, detail, now)
        record(session, saga["id"], "received", envelope, detail=detail)
        self._apply(session, saga, engine, actions)

    async def _on_dead_letter(
        self,
        session: AsyncSession,
        saga_id: uuid.UUID | None,
        topic: str,
        origin: str | None,
        why: str | None,
    ) -> None:
        """A step could not read a message: its command fails the step if the saga is known."""
        saga = await self._saga(session, saga_id) if saga_id is not None else None
        step = self._step_by_topic[topic]
        if saga is None:
            return  # nothing of ours: a saga never started has no step to fail
        command = origin == self.saga_topics.step(step).command
        reason = f"unprocessable by {step}: {why}"
        engine = self._engine(saga)
        _has_step(saga, engine, step)
        actions = engine.dead_lettered(step, command=command, reason=reason, now=time.time())
        if command:
            event = event_row(saga["id"], "received", "dead-letter", step, 1, None, reason)
            append(session, EVENTS, [event])
        self._apply(session, saga, engine, actions)

    @staticmethod
    def _dead_letter_of(message: Incoming) -> tuple[str | None, str | None]:
        """A forwarded dead letter's origin topic and reason (None, None: an envelope)."""
        if message.envelope is not None:
            return None, None
        origin = header_value(message.record.headers, "dlt.origin.topic")
        return origin, message.dead_letter_reason

    @staticmethod
    def _saga_id(message: Incoming) -> uuid.UUID | None:
        if message.envelope is not None:
            return message.envelope.saga_id
        try:
            return uuid.UUID(bytes(message.record.key or b"").decode())
        except ValueError:
            return None

    # -- the clock --------------------------------------------------------------------------------

    async def tick(self, db: Database, limit: int = 200) -> int:
        """Hand timed-out sagas to the engine; returns how many were due. Every few seconds it
        also counts the sagas in flight."""
        await self.in_flight.refresh(db)
        try:
            return await self._tick(db, {"limit": limit})
        except Exception as exc:
            if is_transient(exc):
                raise
            # A database error (one saga's writes refused at the commit) fails the whole batch:
            # each due saga is then taken alone, and one that still fails is marked alone.
            log.warning("%s: timer batch failed (%s); each saga alone", self.name, exc)
        async with db.reads() as session:
            result = await session.execute(_DUE_IDS, {"now": utcnow(), "limit": limit})
            ids = list(result.scalars())
        for saga_id in ids:
            try:
                await self._tick(db, {"limit": 1, "id": saga_id})
            except Exception as exc:
                if is_transient(exc):
                    raise
                async with db.transaction() as session:
                    saga = await self._saga(session, saga_id)
                    if saga is not None:
                        self._failed(session, saga, exc)
        return len(ids)

    async def _tick(self, db: Database, parameters: dict[str, Any]) -> int:
        """The due sagas (`limit` of them, or the one of `id`) in one transaction."""
        async with db.transaction() as session:
            query = _DUE_ONE if "id" in parameters else _DUE
            result = await session.execute(query, {"now": utcnow(), **parameters})
            due = [dict(row) for row in result.mappings()]
            batch_cache(session, "sagas").update((saga["id"], saga) for saga in due)
            # A saga with failures is due for its retry: its parked inputs are re-driven first.
            parked = await stuck.parked_of(session, [s["id"] for s in due if s["failures"]])
            applied: list[int] = []
            await self._load_versions(session, {saga["version"] for saga in due})
            now = time.time()
            for saga in due:
                with tracing.span_in(saga["traceparent"], "saga timeout"):
                    inputs = parked.get(saga["id"], [])
                    work = functools.partial(self.redrive, session, saga, inputs, now)
                    if await self.isolated(session, saga, work):
                        applied += [row["id"] for row in inputs]
            await stuck.unpark(session, applied)
            return len(due)

    # -- outputs ----------------------------------------------------------------------------------

    def _new_saga(
        self,
        session: AsyncSession,
        saga_id: uuid.UUID,
        status: str,
        payload: dict[str, Any],
        *,
        origin: Origin = Origin.INITIATOR,
    ) -> SagaRow:
        """A saga row inserted when the transaction ends (with what happened to it by then)."""
        now = utcnow()
        saga: SagaRow = {
            "id": saga_id,
            "name": self.definition.name,
            "status": status,
            "execution": self.version.execution,
            "payload": payload,
            "state": {},
            "reason": None,
            "response": None,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
            "next_deadline": None,
            "traceparent": tracing.current_traceparent(),
            "results": {},
            "origin": origin,
            "failures": 0,
            "version": self.version.digest,
        }
        append(session, SAGAS, [saga])
        batch_cache(session, "sagas")[saga_id] = saga
        batch_cache(session, "new_sagas")[saga_id] = True
        return saga

    def _engine(self, saga: SagaRow) -> Engine:
        """The saga's engine, on the policy of the version it runs on."""
        return Engine(self._version(saga).policy, SagaState.model_validate(saga["state"]))

    def _apply(
        self, session: AsyncSession, saga: SagaRow, engine: Engine, actions: list[Action]
    ) -> None:
        saga_id = saga["id"]
        for action in actions:
            if isinstance(action, ResendOutcome):  # the original outcome
                if saga["response"] is not None:
                    response = Envelope.model_validate(saga["response"])
                    if action.fresh:
                        response = response.model_copy(update={"id": uuid.uuid4()})
                    outbox.send(session, self.saga_topics.response, [response])
                    record(session, saga_id, "sent", response, detail="re-sent outcome")
                continue
            envelope = self._message(saga, action, list(engine.state.steps))
            detail = getattr(action, "reason", None)
            if isinstance(action, Finish) and saga["origin"] == Origin.API:
                # No initiator waits on a topic: the outcome is the row, read over HTTP.
                record(session, saga_id, "ended", envelope, detail=detail)
            else:
                outbox.send(session, self._topic(action), [envelope])
                record(session, saga_id, "sent", envelope, detail=detail)
            if isinstance(action, Finish):
                finished = utcnow()
                if saga["origin"] != Origin.API:
                    saga["response"] = envelope.model_dump(mode="json")
                saga["finished_at"] = finished
                finish = functools.partial(
                    saga_finished, action.status, saga["created_at"], finished
                )
                after_commit(session, finish)
                after_commit(session, functools.partial(self.ended.ended, saga_id))
        state = engine.state
        saga.update(
            state=state.model_dump(mode="json"),
            status=state.status,
            reason=state.reason[:1000] if state.reason else None,
            next_deadline=from_epoch(state.next_deadline),
            updated_at=utcnow(),
        )
        if saga_id not in batch_cache(session, "new_sagas"):  # a new one's INSERT writes it all
            update_later(session, SAGAS, saga, key=("id",), columns=CHANGING)

    def _topic(self, action: Message) -> str:
        """Where an action goes; a step's topics follow from its name, whichever version of
        the Saga has it."""
        if isinstance(action, SendCommand):
            return self.saga_topics.step(action.step).command
        if isinstance(action, SendCompensation):
            return self.saga_topics.step(action.step).compensation
        return self.saga_topics.response

    def _message(self, saga: SagaRow, action: Message, order: list[str]) -> Envelope:
        """The action's message; `order` is the saga's steps, in the order it runs them."""
        common: dict[str, Any] = {"saga_id": saga["id"], "saga": saga["name"]}
        if isinstance(action, SendCommand):
            # Whose results the command carries: the steps before it, when they run in turn.
            earlier = self._version(saga).earlier(action.step, order)
            return Envelope(
                type=StepTypes(action.step).command,
                step=action.step,
                attempt=action.attempt,
                payload=command_payload(saga["payload"], saga["results"], earlier),
                **common,
            )
        if isinstance(action, SendCompensation):
            return Envelope(
                type=StepTypes(action.step).compensate,
                step=action.step,
                attempt=action.attempt,
                payload=compensation_payload(saga["results"], action.step),
                **common,
            )
        return Envelope(
            type=OUTCOME_TYPES[action.status],
            payload={"status": action.status, "reason": action.reason},
            **common,
        )


def _has_step(saga: SagaRow, engine: Engine, step: str) -> None:
    """A reply of a step the saga's version does not have is not the saga's: dead-lettered."""
    if step not in engine.state.steps:
        raise Unprocessable(f"saga {saga['id']} has no step {step!r} (its version has not)")


def _keep_result(saga: SagaRow, step: str, result: dict[str, Any]) -> None:
    """Keep a step's result, the payload of its done reply. The first one stays: a step's
    service repeats its original reply, and the commands sent after it must not change."""
    if step not in saga["results"]:
        saga["results"] = {**saga["results"], step: result}


async def _load(session: AsyncSession, ids: set[uuid.UUID]) -> None:
    """Lock and read the sagas of `ids` not read yet in this transaction (None: no such saga)."""
    await select_locked_into(session, SAGAS, "id", ids, batch_cache(session, "sagas"))


def record(
    session: AsyncSession,
    saga_id: uuid.UUID,
    direction: str,
    envelope: Envelope,
    *,
    detail: str | None = None,
) -> None:
    row = event_row(
        saga_id, direction, envelope.type, envelope.step, envelope.attempt, envelope.id, detail
    )
    append(session, EVENTS, [row])


def event_row(
    saga_id: uuid.UUID,
    direction: str,
    type_: str,
    step: str | None,
    attempt: int,
    message_id: uuid.UUID | None,
    detail: str | None,
) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "at": utcnow(),
        "direction": direction,
        "type": type_,
        "step": step,
        "attempt": attempt,
        "message_id": message_id,
        "detail": detail[:1000] if detail else None,
    }
