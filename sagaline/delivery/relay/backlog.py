"""The relay's backlog gauges: how many outbox rows wait to be published, and for how long.

Measured by one statement on the outbox's partial index of unpublished rows, at most once every
`interval_s`, so a busy relay pays one extra round trip a second rather than one per batch.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sagaline.delivery.outbox import OUTBOX
from sagaline.domain.clock import seconds_since, utcnow
from sagaline.telemetry.metrics import RELAY_BACKLOG, RELAY_OLDEST_AGE
from sagaline.telemetry.throttle import Every

# The rows still to send: unpublished, past the last seq sent and not yet marked (`after`, see
# sagaline.delivery.relay.marks). The relay's read and the backlog gauges count the same rows.
WAITING = and_(OUTBOX.c.published_at.is_(None), OUTBOX.c.seq > bindparam("after"))
_OLDEST_CREATED = (
    select(OUTBOX.c.created_at).where(WAITING).order_by(OUTBOX.c.seq).limit(1)
).scalar_subquery()
_BACKLOG = (
    select(func.count().label("rows"), _OLDEST_CREATED.label("oldest"))
    .select_from(OUTBOX)
    .where(WAITING)
)


class BacklogGauges:
    """Sets one relay's backlog gauges when `due()`: at most once every `interval_s`."""

    def __init__(self, service: str, interval_s: float = 1.0) -> None:
        self.service = service
        self._every = Every(interval_s)

    def due(self) -> bool:
        """Whether to measure now (True at most once every `interval_s`)."""
        return self._every.due()

    async def measure(self, connection: AsyncConnection, after: int = 0) -> None:
        """Rows past `after` (those sent and not yet marked published are not waiting)."""
        row = (await connection.execute(_BACKLOG, {"after": after})).one()
        RELAY_BACKLOG.labels(self.service).set(row.rows)
        RELAY_OLDEST_AGE.labels(self.service).set(seconds_since(row.oldest, utcnow()))

    def clear(self) -> None:
        """Stop reporting (no longer the leader: the leader's gauges are the ones to read)."""
        self._every.reset()
        for gauge in (RELAY_BACKLOG, RELAY_OLDEST_AGE):
            with contextlib.suppress(KeyError):  # never set
                gauge.remove(self.service)
