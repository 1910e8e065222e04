"""order-orchestrator HTTP API: sagas, their state and their history (and the timeline page)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from sagaline.domain.engine import SagaStatus
from sagaline.http.api import PAGE_LIMIT, count_by
from sagaline.service import Runtime, runtime_of
from sagaline.services.orchestrator.models import Saga
from sagaline.services.orchestrator.saga_queries import (
    FilterDep,
    SagaDetailOut,
    SagaOut,
    find_sagas,
    saga_detail,
)
from sagaline.services.orchestrator.ui import router as ui_router

router = APIRouter(tags=["sagas"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


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
    where: FilterDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SagaOut]:
    """Sagas oldest first (`newest_first=true` to reverse), filtered by status, age in seconds
    (`older_than_s`, `newer_than_s`) and a piece of the failure reason (`reason`)."""
    async with runtime.db.reads() as session:
        sagas = await find_sagas(session, where, limit=limit, offset=offset)
    return [SagaOut.of(saga) for saga in sagas]


@router.get("/sagas/{saga_id}", response_model=SagaDetailOut)
async def get_saga(saga_id: uuid.UUID, runtime: RuntimeDep) -> SagaDetailOut:
    async with runtime.db.reads() as session:
        detail = await saga_detail(session, saga_id)
    if detail is None:
        raise HTTPException(404, f"no saga {saga_id}")
    return detail


# The page is read-only and GET-only: the token guard every router carries lets it through, as
# it does every read of the JSON API.
router.include_router(ui_router)
