"""The inbox: which message ids a service has already handled."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.domain.clock import utcnow
from sagaline.storage import direct_sql
from sagaline.storage.tables import InboxMessage, table_of

INBOX: Table = table_of(InboxMessage)
# Built once: a statement built per call costs more Python than its round trip to the database.
_CLAIM = {
    name: dialect.insert(INBOX).on_conflict_do_nothing().returning(INBOX.c.message_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_CLAIMED_COLUMNS = ("message_id", "topic", "received_at")


async def claim(session: AsyncSession, messages: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
    """Record (id, topic) pairs not seen before; return the ids that are new.

    One INSERT ... ON CONFLICT DO NOTHING RETURNING, in the caller's transaction: a rolled-back
    handler also forgets its claim, and two consumers racing on one id (a rebalance) cannot both
    win it.
    """
    rows = {message_id: topic for message_id, topic in reversed(messages)}
    if not rows:
        return set()
    now = utcnow()
    params = [
        {"message_id": mid, "topic": topic, "received_at": now} for mid, topic in rows.items()
    ]
    driver = await direct_sql.driver_of(session)
    if driver is not None:
        compiled = direct_sql.insert_new_returning(
            INBOX, _CLAIMED_COLUMNS, "message_id", len(params), session.get_bind().dialect
        )
        new = await direct_sql.fetch(driver, compiled, direct_sql.numbered_rows(params))
        return {row["message_id"] for row in new}
    statement = _CLAIM[session.get_bind().dialect.name]
    return set((await session.scalars(statement, params)).all())
