"""The relay's clean-up: published outbox rows and old inbox ids, deleted after their retention.

The leader runs it every `purge_interval_s`, on its own connection, after marking what the broker
acknowledged. An inbox id is kept for as long as a duplicate of its message can still arrive
(docs/design.md, "Dedup window"); a published outbox row, only for inspection.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from sagaline.delivery.inbox import INBOX
from sagaline.delivery.outbox import OUTBOX
from sagaline.domain.clock import utcnow
from sagaline.storage.db import next_transaction_writes


async def purge(
    connection: AsyncConnection, *, outbox_retention: timedelta, inbox_retention: timedelta
) -> None:
    now = utcnow()
    await next_transaction_writes(connection, True)
    await connection.execute(delete(OUTBOX).where(OUTBOX.c.published_at < now - outbox_retention))
    await connection.execute(delete(INBOX).where(INBOX.c.received_at < now - inbox_retention))
    await connection.commit()
