"""The real orchestrator handler on a real database, driven message by message as its consumer
loop drives it (each message in a transaction of its own), with what it sent read back from its
outbox. No broker: the test plays the steps' services."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from sagaline import registration
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.outbox import OUTBOX
from sagaline.domain.clock import utcnow
from sagaline.domain.definition import SagaDefinition, default_definition_path, load_definition
from sagaline.domain.envelope import Envelope
from sagaline.domain.messages import SAGA_START
from sagaline.service import Runtime, create_app
from sagaline.services.orchestrator import api
from sagaline.services.orchestrator import handler as handler_module
from sagaline.services.orchestrator.handler import Orchestrator
from sagaline.settings import Settings
from sagaline.storage.db import Database

_OFFSETS = itertools.count()

TOKEN = "s3cret-token"  # the API token of the apps `Harness.client` serves


def definition(
    *steps: str,
    execution: str = "sequential",
    name: str = "trip",
    max_attempts: int = 3,
    compensation_attempts: int = 3,
) -> SagaDefinition:
    """A Saga of these steps (the reference file's other settings)."""
    document = load_definition(default_definition_path()).model_dump(by_alias=True)
    document["metadata"]["name"] = name
    document["spec"].update(
        execution=execution,
        maxAttempts=max_attempts,
        compensationMaxAttempts=compensation_attempts,
        steps=[{"name": step} for step in steps],
    )
    return SagaDefinition.model_validate(document)


async def migrated(url: str) -> Database:
    await asyncio.to_thread(registration.upgrade, registration.find("orchestrator"), url)
    return Database(url)


@dataclass
class Harness:
    db: Database
    orchestrator: Orchestrator

    @property
    def saga(self) -> str:
        return self.orchestrator.definition.name

    async def deliver(self, topic: str, envelope: Envelope) -> None:
        """One consumed message, handled in its own transaction as the consumer loop does."""
        value = envelope.encode()
        record: Any = ConsumerRecord(
            topic, 0, next(_OFFSETS), 0, 0, envelope.key, value, None, 36, len(value), []
        )
        self.orchestrator.check(topic, envelope)  # what the loop checks before handling
        message = Incoming(record, envelope)
        async with self.db.transaction() as session:
            await self.orchestrator.prepare(session, [message])
            await self.orchestrator.handle(session, message)

    async def start(self, payload: dict[str, Any]) -> uuid.UUID:
        """A saga started by the initiator's saga.start."""
        saga_id = uuid.uuid4()
        start = Envelope(type=SAGA_START, saga_id=saga_id, saga=self.saga, payload=payload)
        await self.deliver(self.orchestrator.saga_topics.orchestrator, start)
        return saga_id

    async def done(
        self, saga_id: uuid.UUID, step: str, result: dict[str, Any], attempt: int = 1
    ) -> None:
        """The step's service applied the command: its done reply carries the result."""
        types = self.orchestrator.types[step]
        await self.deliver(*self._reply(saga_id, step, types.done, result, attempt))

    async def failed(self, saga_id: uuid.UUID, step: str, reason: str = "refused") -> None:
        types = self.orchestrator.types[step]
        await self.deliver(*self._reply(saga_id, step, types.failed, {"reason": reason}, 1))

    async def compensated(self, saga_id: uuid.UUID, step: str) -> None:
        types = self.orchestrator.types[step]
        await self.deliver(*self._reply(saga_id, step, types.compensated, {}, 1))

    def _reply(
        self, saga_id: uuid.UUID, step: str, type_: str, payload: dict[str, Any], attempt: int
    ) -> tuple[str, Envelope]:
        envelope = Envelope(
            type=type_, saga_id=saga_id, saga=self.saga, step=step, attempt=attempt, payload=payload
        )
        topics = self.orchestrator.steps[step]  # a refusal goes to the step's .dlt topic
        return (topics.dlt if type_.endswith(".failed") else topics.success), envelope

    async def tick_later(self, monkeypatch: pytest.MonkeyPatch, seconds: float) -> int:
        """The timer, run as if `seconds` had passed: what was due by then is re-sent."""
        later = time.time() + seconds
        moment = utcnow() + timedelta(seconds=seconds)
        with monkeypatch.context() as patched:
            patched.setattr(handler_module, "time", SimpleNamespace(time=lambda: later))
            patched.setattr(handler_module, "utcnow", lambda: moment)
            return await self.orchestrator.tick(self.db)

    async def sent(self, saga_id: uuid.UUID | None = None) -> list[tuple[str, Envelope]]:
        """Every message the orchestrator put in its outbox (of one saga), in order."""
        async with self.db.reads() as session:
            rows = (await session.execute(select(OUTBOX).order_by(OUTBOX.c.seq))).mappings()
            messages = [(row["topic"], Envelope.decode(row["value"])) for row in rows]
        return [(t, e) for t, e in messages if saga_id is None or e.saga_id == saga_id]

    async def commands(self, saga_id: uuid.UUID, step: str) -> list[Envelope]:
        """The commands sent to `step` for the saga, every attempt."""
        topic = self.orchestrator.steps[step].command
        return [e for t, e in await self.sent(saga_id) if t == topic]

    async def compensations(self, saga_id: uuid.UUID, step: str) -> list[Envelope]:
        topic = self.orchestrator.steps[step].compensation
        return [e for t, e in await self.sent(saga_id) if t == topic]

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        """An HTTP client of `app(token)`, over ASGI."""
        transport = httpx.ASGITransport(app=self.app(token))
        return httpx.AsyncClient(transport=transport, base_url="http://orchestrator")

    def app(self, token: str | None) -> FastAPI:
        """The orchestrator's real app (its routers behind the token guard, its error
        handling) on this handler and database; its lifespan, which starts the consumer, is
        not run by an ASGI transport."""
        settings = Settings(api_token=None if token is None else SecretStr(token))
        runtime = Runtime(
            name="orchestrator",
            settings=settings,
            definition=self.orchestrator.definition,
            db=self.db,
            handler=self.orchestrator,
            routers=[api.router],
        )
        return create_app(runtime)


@asynccontextmanager
async def harness(url: str, saga: SagaDefinition) -> AsyncIterator[Harness]:
    db = await migrated(url)
    try:
        yield Harness(db, Orchestrator(saga))
    finally:
        await db.dispose()


def payloads(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    return [envelope.payload for envelope in envelopes]
