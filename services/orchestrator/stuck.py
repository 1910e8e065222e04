"""A saga whose processing raises is rolled back alone: its failure is counted, it is retried
with backoff, it shows STUCK after `STUCK_AFTER` failures in a row, and its inputs wait in
`saga_parked` (in order) until a retry re-drives them. docs/design.md, "A stuck saga".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from sagaline.domain.clock import from_epoch, utcnow
from sagaline.domain.engine import SagaStatus
from sagaline.domain.envelope import Envelope
from sagaline.services.orchestrator.models import SagaParked
from sagaline.storage.db import after_commit, append
from sagaline.storage.tables import table_of
from sagaline.telemetry.metrics import SAGA_FAILURES

log = logging.getLogger(__name__)
PARKED: Table = table_of(SagaParked)
STUCK_AFTER = 3  # failures in a row before a saga shows STUCK
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 300.0
# What a failure changes on the saga's row (its state stays as it was before the failure).
FAILURE_COLUMNS = ("status", "reason", "failures", "next_deadline", "updated_at")


def retry_delay_s(failures: int) -> float:
    """Seconds before the automatic retry that follows the `failures`-th failure in a row."""
    return min(FIRST_RETRY_S * 2 ** (failures - 1), MAX_RETRY_S)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def failed(saga: dict[str, Any], exc: BaseException, now: float, service: str) -> str:
    """Mark one more failure on the saga's row (a dict, written by the caller): the next retry
    after a backoff, STUCK from the `STUCK_AFTER`-th failure in a row; returns the reason."""
    failures = int(saga.get("failures") or 0) + 1
    reason = f"processing failed {failures} time(s) in a row: {describe(exc)}"
    saga.update(
        failures=failures,
        reason=reason[:1000],
        next_deadline=from_epoch(now + retry_delay_s(failures)),
        updated_at=utcnow(),
    )
    if failures >= STUCK_AFTER:
        saga["status"] = SagaStatus.STUCK
    log.warning("%s: saga %s: %s", service, saga["id"], reason, exc_info=exc)
    return reason


def count_failure(session: AsyncSession, service: str) -> None:
    after_commit(session, SAGA_FAILURES.labels(service).inc)


def park(
    session: AsyncSession,
    saga_id: uuid.UUID,
    topic: str,
    envelope: Envelope | None,
    *,
    origin: str | None = None,
    reason: str | None = None,
) -> None:
    """Keep an input of the saga for its retry (queued: written when the transaction ends)."""
    row = {
        "saga_id": saga_id,
        "parked_at": utcnow(),
        "topic": topic,
        "envelope": None if envelope is None else envelope.model_dump(mode="json"),
        "origin": origin,
        "reason": reason[:1000] if reason else None,
    }
    append(session, PARKED, [row])


async def parked_of(
    session: AsyncSession, saga_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The parked inputs of these sagas, each saga's in the order they came."""
    ids = list(saga_ids)
    inputs: dict[uuid.UUID, list[dict[str, Any]]] = {saga_id: [] for saga_id in ids}
    if not ids:
        return inputs
    query = select(PARKED).where(PARKED.c.saga_id.in_(ids)).order_by(col(PARKED.c.id))
    for row in (await session.execute(query)).mappings():
        inputs[row["saga_id"]].append(dict(row))
    return inputs


async def unpark(session: AsyncSession, row_ids: list[int]) -> None:
    """Delete parked inputs that were applied."""
    if row_ids:
        await session.execute(delete(PARKED).where(PARKED.c.id.in_(row_ids)))
