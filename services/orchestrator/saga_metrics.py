"""The orchestrator's saga metrics: durations by outcome, and sagas in flight.

In flight is counted from the saga table (on its status index) rather than kept by increments,
so it is right from the first count after a restart, whichever replica counts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col

from sagaline.domain.clock import seconds_since
from sagaline.domain.engine import SagaStatus
from sagaline.services.orchestrator.models import Saga
from sagaline.storage.db import Database
from sagaline.telemetry.metrics import SAGA_DURATION, SAGAS, SAGAS_IN_FLIGHT
from sagaline.telemetry.throttle import Every

IN_FLIGHT = [status for status in SagaStatus if not status.terminal]
_COUNT_IN_FLIGHT = (
    select(col(Saga.status), func.count())
    .where(col(Saga.status).in_(IN_FLIGHT))
    .group_by(col(Saga.status))
)


def saga_finished(status: SagaStatus, created_at: datetime, finished_at: datetime) -> None:
    """Count a saga that reached `status` (terminal); called once its transaction committed."""
    SAGAS.labels(status).inc()
    SAGA_DURATION.labels(status).observe(seconds_since(created_at, finished_at))


class SagasInFlight:
    """Sets the in-flight gauge from a COUNT by status, at most once every `interval_s`."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self._every = Every(interval_s)

    async def refresh(self, db: Database) -> None:
        if not self._every.due():
            return
        async with db.reads() as session:
            counts = dict((await session.execute(_COUNT_IN_FLIGHT)).tuples().all())
        for status in IN_FLIGHT:
            SAGAS_IN_FLIGHT.labels(status).set(counts.get(status, 0))
