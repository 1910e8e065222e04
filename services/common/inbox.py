"""The inbox: which message ids a service has already handled."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.tables import InboxMessage


async def claim(
    session: AsyncSession, messages: Sequence[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """Record (id, topic) pairs not seen before; return the ids that are new.

    Runs in the caller's transaction, so a rolled-back handler also forgets the claim. Two
    consumers racing on the same id (a rebalance) collide on the primary key: one rolls back.
    """
    ids = {message_id for message_id, _ in messages}
    if not ids:
        return set()
    seen = set(
        (
            await session.scalars(
                select(InboxMessage.message_id).where(InboxMessage.message_id.in_(ids))  # type: ignore[attr-defined]
            )
        ).all()
    )
    fresh: dict[uuid.UUID, str] = {}
    for message_id, topic in messages:
        if message_id not in seen and message_id not in fresh:
            fresh[message_id] = topic
    session.add_all(InboxMessage(message_id=mid, topic=topic) for mid, topic in fresh.items())
    return set(fresh)
