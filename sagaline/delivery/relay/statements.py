"""The relay's statements on the outbox: the next batch of unpublished rows, and the marking of
rows published.

The read takes the oldest unpublished rows in `seq` order, at most `limit` of them and, past the
first, at most `max_bytes` of values: a batch of many rows is what makes a relay fast, and its
memory stays bounded. The relay runs it on SQLAlchemy, or straight on the SQLite driver
(`sagaline.storage.direct_sql`), whose rows it reads as `UnpublishedRow`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from sqlalchemy import Update, bindparam, func, select, update

from sagaline.delivery.outbox import OUTBOX
from sagaline.delivery.relay.backlog import WAITING
from sagaline.storage.db import among

_COLUMNS = (OUTBOX.c.seq, OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.value, OUTBOX.c.headers)
_OLDEST = (
    select(
        *_COLUMNS,
        func.sum(func.length(OUTBOX.c.value)).over(order_by=OUTBOX.c.seq).label("through"),
    )
    .where(WAITING)
    .order_by(OUTBOX.c.seq)
    .limit(bindparam("limit"))
    .subquery()
)
UNPUBLISHED = (
    select(*(_OLDEST.c[column.key] for column in _COLUMNS), _OLDEST.c.through)
    .where(_OLDEST.c.through - func.length(_OLDEST.c.value) < bindparam("max_bytes"))
    .order_by(_OLDEST.c.seq)
)


@functools.cache
def mark_published(dialect: str) -> Update:
    return (
        update(OUTBOX)
        .where(among(OUTBOX.c.seq, dialect))
        .values(published_at=bindparam("published_at"))
    )


class UnpublishedRow(NamedTuple):
    """A row of `UNPUBLISHED` read on the SQLite driver (as SQLAlchemy's rows are read)."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes
    headers: list[list[str]]
    through: int
