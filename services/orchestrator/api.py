"""order-orchestrator HTTP API: sagas, their state and their history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import col

from services.common.api import PAGE_LIMIT, count_by
from services.common.service import Runtime, runtime_of
from services.orchestrator.engine import SagaStatus
from services.orchestrator.models import Saga, SagaEvent

router = APIRouter(tags=["sagas"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


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
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class SagaDetailOut(SagaOut):
    history: list[SagaEventOut]


def _saga_out(saga: Saga) -> dict[str, Any]:
    return {
        "id": saga.id,
        "name": saga.name,
        "status": saga.status,
        "execution": saga.execution,
        "reason": saga.reason,
        "steps": saga.state.get("steps", {}),
        "payload": saga.payload,
        "created_at": saga.created_at,
        "updated_at": saga.updated_at,
        "finished_at": saga.finished_at,
    }


@router.get("/sagas/summary")
async def summary(runtime: RuntimeDep) -> dict[str, int]:
    async with runtime.db.reads() as session:
        counts = await count_by(session, Saga.status)
    return {status: counts.get(status, 0) for status in SagaStatus} | {
        "total": sum(counts.values())
    }


@router.get("/sagas", response_model=list[SagaOut])
async def list_sagas(
    runtime: RuntimeDep,
    status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SagaOut]:
    query = select(Saga).order_by(col(Saga.created_at), col(Saga.id))
    if status is not None:
        query = query.where(col(Saga.status) == status)
    async with runtime.db.reads() as session:
        sagas = (await session.scalars(query.limit(limit).offset(offset))).all()
    return [SagaOut(**_saga_out(saga)) for saga in sagas]


@router.get("/sagas/{saga_id}", response_model=SagaDetailOut)
async def get_saga(saga_id: uuid.UUID, runtime: RuntimeDep) -> SagaDetailOut:
    async with runtime.db.reads() as session:
        saga = await session.get(Saga, saga_id)
        if saga is None:
            raise HTTPException(404, f"no saga {saga_id}")
        events = (
            await session.scalars(
                select(SagaEvent)
                .where(col(SagaEvent.saga_id) == saga_id)
                .order_by(col(SagaEvent.id))
            )
        ).all()
    history = [SagaEventOut.model_validate(event, from_attributes=True) for event in events]
    return SagaDetailOut(**_saga_out(saga), history=history)
