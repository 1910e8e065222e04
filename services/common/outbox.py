"""Writing to the outbox: the only way a service sends a message."""

from __future__ import annotations

import base64
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import mark_outbox_dirty
from services.common.envelope import Envelope, Headers
from services.common.tables import OutboxMessage


def encode_headers(headers: Headers) -> list[list[str]]:
    return [[name, base64.b64encode(value).decode()] for name, value in headers]


def decode_headers(stored: list[list[str]]) -> Headers:
    return [(name, base64.b64decode(value)) for name, value in stored]


def send(session: AsyncSession, topic: str, envelopes: Iterable[Envelope]) -> None:
    """Queue envelopes for `topic` in the caller's transaction."""
    rows = [
        OutboxMessage(
            message_id=envelope.id,
            topic=topic,
            key=envelope.key,
            value=envelope.encode(),
            headers=encode_headers(envelope.headers()),
        )
        for envelope in envelopes
    ]
    if rows:
        session.add_all(rows)
        mark_outbox_dirty(session)


def send_raw(
    session: AsyncSession,
    *,
    topic: str,
    message_id: object,
    key: bytes | None,
    value: bytes,
    headers: Headers,
) -> None:
    """Queue a message whose bytes are not an envelope (a dead letter keeps the original bytes)."""
    session.add(
        OutboxMessage(
            message_id=message_id, topic=topic, key=key, value=value, headers=encode_headers(headers)
        )
    )
    mark_outbox_dirty(session)
