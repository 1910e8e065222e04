"""Reading sagas for the JSON API and the timeline page: one filter, one history query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from sagaline.domain.clock import utcnow
from sagaline.domain.engine import SagaStatus
from sagaline.services.orchestrator.models import Saga, SagaEvent

MAX_AGE_S = 10 * 365 * 24 * 3600  # ten years: beyond it an age is a typo, refused with 422
MAX_REASON_FILTER = 200


class SagaEventOut(BaseModel):
    at: datetime
    direction: str
    type: str
    step: str | None
    attempt: int
    message_id: uuid.UUID | None
    detail: str | None


class SagaOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str
    execution: str
    reason: str | None
    steps: dict[str, Any]
    payload: dict[str, Any]
    results: dict[str, Any]  # each step's result (its done reply's payload), by step
    origin: str  # initiator (a saga.start) | api (POST /sagas)
    version: str | None  # its definition version's digest (GET /versions); None: from before
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, saga: Saga) -> SagaOut:
        return cls(
            id=saga.id,
            name=saga.name,
            status=saga.status,
            execution=saga.execution,
            reason=saga.reason,
            steps=saga.state.get("steps", {}),
            payload=saga.payload,
            results=saga.results,
            origin=saga.origin,
            version=saga.version,
            created_at=saga.created_at,
            updated_at=saga.updated_at,
            finished_at=saga.finished_at,
        )


class SagaDetailOut(SagaOut):
    history: list[SagaEventOut]


@dataclass(frozen=True)
class SagaFilter:
    """Which sagas a list shows; every field is optional and they combine with AND."""

    status: SagaStatus | None = None
    older_than_s: float | None = None  # created at least this many seconds ago
    newer_than_s: float | None = None  # created at most this many seconds ago
    reason: str | None = None  # the failure reason contains this, ignoring case
    newest_first: bool = False

    def apply(self, query: Select[Saga]) -> Select[Saga]:
        now = utcnow()
        if self.status is not None:
            query = query.where(col(Saga.status) == self.status)
        if self.older_than_s is not None:
            query = query.where(col(Saga.created_at) <= now - timedelta(seconds=self.older_than_s))
        if self.newer_than_s is not None:
            query = query.where(col(Saga.created_at) >= now - timedelta(seconds=self.newer_than_s))
        if self.reason:
            query = query.where(col(Saga.reason).icontains(self.reason, autoescape=True))
        if self.newest_first:
            return query.order_by(col(Saga.created_at).desc(), col(Saga.id).desc())
        return query.order_by(col(Saga.created_at), col(Saga.id))


def _blank_is_none(value: object) -> object:
    """An empty parameter is no filter: an HTML form sends its empty fields as `name=`."""
    return None if value == "" else value


Blank = BeforeValidator(_blank_is_none)
Age = Annotated[Annotated[float, Field(ge=0, le=MAX_AGE_S)] | None, Blank]


def saga_filter(
    status: Annotated[SagaStatus | None, Blank] = None,
    older_than_s: Age = None,
    newer_than_s: Age = None,
    reason: Annotated[str | None, Query(max_length=MAX_REASON_FILTER)] = None,
    newest_first: bool = False,
) -> SagaFilter:
    """The filter from a request's query string (a FastAPI dependency: bad input is a 422)."""
    return SagaFilter(status, older_than_s, newer_than_s, reason or None, newest_first)


FilterDep = Annotated[SagaFilter, Depends(saga_filter)]


async def find_sagas(
    session: AsyncSession, where: SagaFilter, *, limit: int, offset: int = 0
) -> Sequence[Saga]:
    query = where.apply(select(Saga)).limit(limit).offset(offset)
    return (await session.scalars(query)).all()


async def saga_detail(session: AsyncSession, saga_id: uuid.UUID) -> SagaDetailOut | None:
    """One saga with its history (what the orchestrator sent and received, in order)."""
    saga = await session.get(Saga, saga_id)
    if saga is None:
        return None
    query = select(SagaEvent).where(col(SagaEvent.saga_id) == saga_id).order_by(col(SagaEvent.id))
    events = (await session.scalars(query)).all()
    history = [SagaEventOut.model_validate(event, from_attributes=True) for event in events]
    return SagaDetailOut(**SagaOut.of(saga).model_dump(), history=history)
