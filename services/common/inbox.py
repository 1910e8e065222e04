"""The inbox: which message ids a service has already handled."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import utcnow
from services.common.tables import InboxMessage, table_of

INBOX: Table = table_of(InboxMessage)


async def claim(session: AsyncSession, messages: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
    """Record (id, topic) pairs not seen before; return the ids that are new.

    One INSERT ... ON CONFLICT DO NOTHING RETURNING, in the caller's transaction: a rolled-back
    handler also forgets its claim, and two consumers racing on one id (a rebalance) cannot both
    win it.
    """
    rows = {message_id: topic for message_id, topic in reversed(messages)}
    if not rows:
        return set()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    now = utcnow()
    statement = (
        dialect.insert(INBOX)
        .values(
            [{"message_id": mid, "topic": topic, "received_at": now} for mid, topic in rows.items()]
        )
        .on_conflict_do_nothing()
        .returning(INBOX.c.message_id)
    )
    return set((await session.scalars(statement)).all())
