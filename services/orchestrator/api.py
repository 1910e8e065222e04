"""The orchestrator's HTTP API: sagas, their state, results and history (and the timeline page).

`POST /sagas` starts a saga with no initiator and `Prefer: wait=N` waits for its end:
docs/design.md, "A generic start".
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from sagaline.domain.engine import SagaStatus
from sagaline.http.api import PAGE_LIMIT, count_by
from sagaline.http.auth import Credentials, require_configured_token
from sagaline.http.prefer import preferred_wait
from sagaline.service import Runtime, runtime_of
from sagaline.services.orchestrator.handler import Orchestrator, SagaRow
from sagaline.services.orchestrator.models import Saga
from sagaline.services.orchestrator.operator_api import router as operator_router
from sagaline.services.orchestrator.saga_queries import (
    FilterDep,
    SagaDetailOut,
    SagaOut,
    find_sagas,
    saga_detail,
)
from sagaline.services.orchestrator.ui import router as ui_router
from sagaline.services.orchestrator.versions_api import router as versions_router

router = APIRouter(tags=["sagas"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]

IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 200
# A started saga's id is derived from its Saga's name and the caller's key: the same key finds
# the same saga by its primary key, whichever replica the request reaches.
SAGA_KEYS = uuid.UUID("6f1f7c1e-6a55-4d0b-9d38-5a6a2f3c0b25")


class StartedSaga(BaseModel):
    id: uuid.UUID
    status: str
    url: str  # relative to the orchestrator's address, like the Location header


def _orchestrator(runtime: Runtime) -> Orchestrator:
    orchestrator = runtime.handler
    assert isinstance(orchestrator, Orchestrator)
    return orchestrator


async def _token_required(runtime: RuntimeDep, credentials: Credentials) -> None:
    require_configured_token(runtime.settings.api_token, credentials, "POST /sagas")


def saga_id_of(saga: str, idempotency_key: str) -> uuid.UUID:
    """The id of the saga of Saga `saga` that `POST /sagas` starts with `idempotency_key`."""
    return uuid.uuid5(SAGA_KEYS, f"{saga}\n{idempotency_key}")


@router.post(
    "/sagas",
    status_code=202,
    response_model=StartedSaga,
    dependencies=[Depends(_token_required)],
    responses={403: {"description": "no API token is configured: starting is refused"}},
)
async def start_saga(
    payload: Annotated[
        dict[str, Any], Body(description="The saga's initial payload (a JSON object)")
    ],
    idempotency_key: Annotated[
        str,
        Header(
            alias=IDEMPOTENCY_KEY,
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="The caller's key: the same key returns the same saga",
        ),
    ],
    runtime: RuntimeDep,
    response: Response,
) -> StartedSaga:
    """Start a saga of this orchestrator's Saga, with no initiator: the saga's row and its first
    commands are written in one transaction. Its outcome is read here (`GET /sagas/{id}`,
    with `Prefer: wait=N`), not sent to any topic. Always needs the API token."""
    orchestrator = _orchestrator(runtime)
    saga_id = saga_id_of(orchestrator.definition.name, idempotency_key)
    saga = await _start(runtime, orchestrator, saga_id, payload)
    if saga["payload"] != payload:
        raise RequestValidationError(
            [
                {
                    "loc": ("header", IDEMPOTENCY_KEY),
                    "msg": f"this key started saga {saga_id} with another payload: "
                    "a new saga needs a new key",
                    "type": "idempotency_key_reused",
                    "input": idempotency_key,
                }
            ]
        )
    url = f"/sagas/{saga_id}"
    response.headers["Location"] = url
    return StartedSaga(id=saga_id, status=saga["status"], url=url)


async def _start(
    runtime: Runtime, orchestrator: Orchestrator, saga_id: uuid.UUID, payload: dict[str, Any]
) -> SagaRow:
    """The saga of `saga_id`, started now unless it was. Two requests with one key may both
    find no saga (on PostgreSQL): the second one's INSERT fails, and it reads the first's."""
    try:
        async with runtime.db.transaction() as session:
            saga, _ = await orchestrator.start_requested(session, saga_id, payload)
    except IntegrityError:
        async with runtime.db.transaction() as session:
            saga, _ = await orchestrator.start_requested(session, saga_id, payload)
    return saga


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
async def get_saga(
    saga_id: uuid.UUID,
    runtime: RuntimeDep,
    response: Response,
    prefer: Annotated[
        str | None,
        Header(description="`wait=N` (N ≤ 30): answer once the saga has ended, or after N s"),
    ] = None,
) -> SagaDetailOut:
    """The saga, its steps' results and its history. With `Prefer: wait=N` (RFC 7240) the
    answer waits up to N seconds for the saga to end."""
    wait = preferred_wait(prefer)
    if not wait:
        return await _read_saga(runtime, saga_id)
    response.headers["Preference-Applied"] = f"wait={wait:g}"
    waiters = _orchestrator(runtime).ended
    deadline = time.monotonic() + wait
    while True:
        with waiters.watch(saga_id) as ended:  # before the read: an end after it still wakes
            detail = await _read_saga(runtime, saga_id)
            remaining = deadline - time.monotonic()
            if SagaStatus(detail.status).terminal or remaining <= 0:
                return detail
            await waiters.until(ended, remaining)


async def _read_saga(runtime: Runtime, saga_id: uuid.UUID) -> SagaDetailOut:
    async with runtime.db.reads() as session:
        detail = await saga_detail(session, saga_id)
    if detail is None:
        raise HTTPException(404, f"no saga {saga_id}")
    return detail


# The page is read-only and GET-only: the token guard every router carries lets it through, as
# it does every read of the JSON API.
router.include_router(ui_router)
router.include_router(operator_router)  # retry and cancel: docs/design.md, "An operator's hands"
router.include_router(versions_router)  # GET /versions: the definition versions in use
