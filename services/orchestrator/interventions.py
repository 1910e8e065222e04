"""An operator's hands on one saga: retry it (a STUCK saga's parked inputs and due work are
re-driven; a FAILED saga's given-up compensations are sent again with fresh attempts) or cancel
it (a RUNNING saga is compensated). Each is written into the saga's history with who asked.
docs/design.md, "An operator's hands".
"""

from __future__ import annotations

import functools
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.domain.engine import SagaStatus
from sagaline.services.orchestrator import stuck
from sagaline.services.orchestrator.handler import EVENTS, Orchestrator, SagaRow, event_row
from sagaline.storage.db import append

OPERATOR = "operator"  # the history's direction of what an operator asked


class Refused(Exception):
    """The saga's state does not allow what was asked (an HTTP 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoSaga(LookupError):
    pass


async def _locked(orchestrator: Orchestrator, session: AsyncSession, saga_id: uuid.UUID) -> SagaRow:
    saga = await orchestrator.locked_saga(session, saga_id)
    if saga is None:
        raise NoSaga(f"no saga {saga_id}")
    return saga


def _asked(session: AsyncSession, saga_id: uuid.UUID, what: str, actor: str) -> None:
    row = event_row(saga_id, OPERATOR, what, None, 1, None, f"asked by {actor}")
    append(session, EVENTS, [row])


async def retry(
    orchestrator: Orchestrator, session: AsyncSession, saga_id: uuid.UUID, actor: str
) -> SagaRow:
    """Re-drive a STUCK saga (or one retrying after failures) or a FAILED one, now; if its
    processing raises again it stays STUCK with the new reason (answered, not refused)."""
    saga = await _locked(orchestrator, session, saga_id)
    now = time.time()
    if saga["failures"]:
        _asked(session, saga_id, "retry", actor)
        inputs = (await stuck.parked_of(session, [saga_id]))[saga_id]
        work = functools.partial(orchestrator.redrive, session, saga, inputs, now)
        if await orchestrator.isolated(session, saga, work):
            await stuck.unpark(session, [row["id"] for row in inputs])
    elif saga["status"] == SagaStatus.FAILED:
        _asked(session, saga_id, "retry", actor)
        engine = orchestrator.engine_of(saga)

        async def compensate_again() -> None:
            orchestrator.apply(session, saga, engine, engine.retry(now))

        await orchestrator.isolated(session, saga, compensate_again)
    else:
        raise Refused(
            f"saga {saga_id} is {saga['status']}: only a FAILED or STUCK saga can be retried"
        )
    return saga


async def cancel(
    orchestrator: Orchestrator, session: AsyncSession, saga_id: uuid.UUID, actor: str
) -> SagaRow:
    """Compensate a RUNNING saga (its steps that may have taken effect are undone)."""
    saga = await _locked(orchestrator, session, saga_id)
    if saga["failures"] or saga["status"] != SagaStatus.RUNNING:
        status = SagaStatus.STUCK if saga["failures"] else saga["status"]
        raise Refused(
            f"saga {saga_id} is {status}: only a RUNNING saga can be cancelled"
            + (" (retry a STUCK saga first)" if saga["failures"] else "")
        )
    _asked(session, saga_id, "cancel", actor)
    engine = orchestrator.engine_of(saga)

    async def compensate() -> None:
        reason = f"cancelled by {actor}"
        orchestrator.apply(session, saga, engine, engine.cancel(reason, time.time()))

    await orchestrator.isolated(session, saga, compensate)
    return saga
