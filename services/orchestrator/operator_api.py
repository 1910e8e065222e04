"""`POST /sagas/{id}/retry` and `POST /sagas/{id}/cancel`: an operator's hands on one saga
(services/orchestrator/interventions.py). Both always need the API token, like `POST /sagas`;
who asked is the `X-Sagaline-Actor` header (else "the API token"), written into the saga's
history. 202 with the saga; 409 with the reason when its state does not allow it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.http.auth import Credentials, require_configured_token
from sagaline.service import Runtime, runtime_of
from sagaline.services.orchestrator import interventions
from sagaline.services.orchestrator.handler import Orchestrator, SagaRow
from sagaline.services.orchestrator.saga_queries import SagaDetailOut, saga_detail

router = APIRouter(tags=["sagas"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
ACTOR_HEADER = "X-Sagaline-Actor"
DEFAULT_ACTOR = "the API token"
Actor = Annotated[
    str | None,
    Header(
        alias=ACTOR_HEADER,
        min_length=1,
        max_length=100,
        pattern=r"^[\x20-\x7e]+$",
        description="Who asks (printable ASCII), written into the saga's history",
    ),
]
Intervention = Callable[[Orchestrator, AsyncSession, uuid.UUID, str], Awaitable[SagaRow]]
ANSWERS: dict[int | str, dict[str, str]] = {
    403: {"description": "no API token is configured: refused"},
    404: {"description": "no such saga"},
    409: {"description": "the saga's state does not allow it (the reason says why)"},
}


async def _token(runtime: RuntimeDep, credentials: Credentials) -> None:
    require_configured_token(runtime.settings.api_token, credentials, "an operator's request")


async def _intervene(
    runtime: Runtime, saga_id: uuid.UUID, actor: str | None, intervention: Intervention
) -> SagaDetailOut:
    orchestrator = runtime.handler
    assert isinstance(orchestrator, Orchestrator)
    try:
        async with runtime.db.transaction() as session:
            await intervention(orchestrator, session, saga_id, actor or DEFAULT_ACTOR)
    except interventions.NoSaga as exc:
        raise HTTPException(404, str(exc)) from None
    except interventions.Refused as exc:
        raise HTTPException(409, exc.reason) from None
    async with runtime.db.reads() as session:
        detail = await saga_detail(session, saga_id)
    assert detail is not None
    return detail


@router.post(
    "/sagas/{saga_id}/retry",
    status_code=202,
    response_model=SagaDetailOut,
    dependencies=[Depends(_token)],
    responses=ANSWERS,
)
async def retry_saga(saga_id: uuid.UUID, runtime: RuntimeDep, actor: Actor = None) -> SagaDetailOut:
    """Re-drive a STUCK saga (its parked inputs, then its due work) or a FAILED one (each
    compensation it gave up is sent again, with fresh attempts)."""
    return await _intervene(runtime, saga_id, actor, interventions.retry)


@router.post(
    "/sagas/{saga_id}/cancel",
    status_code=202,
    response_model=SagaDetailOut,
    dependencies=[Depends(_token)],
    responses=ANSWERS,
)
async def cancel_saga(
    saga_id: uuid.UUID, runtime: RuntimeDep, actor: Actor = None
) -> SagaDetailOut:
    """Compensate a RUNNING saga: its steps that may have taken effect are undone."""
    return await _intervene(runtime, saga_id, actor, interventions.cancel)
