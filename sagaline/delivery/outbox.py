"""Writing to the outbox: the only way a service sends a message."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.domain.clock import utcnow
from sagaline.domain.envelope import Envelope, Headers
from sagaline.storage.db import append
from sagaline.storage.tables import OutboxMessage, table_of
from sagaline.telemetry.tracing import with_current_trace

OUTBOX: Table = table_of(OutboxMessage)


def encode_headers(headers: Headers) -> list[list[str]]:
    return [[name, base64.b64encode(value).decode()] for name, value in headers]


def decode_headers(stored: list[list[str]]) -> Headers:
    return [(name, base64.b64decode(value)) for name, value in stored]


def _row(
    message_id: uuid.UUID, topic: str, key: bytes | None, value: bytes, headers: Headers
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": encode_headers(with_current_trace(headers)),
        "created_at": utcnow(),
        "published_at": None,
    }


def send(session: AsyncSession, topic: str, envelopes: Iterable[Envelope]) -> None:
    """Queue envelopes for `topic` in the caller's transaction."""
    rows = [_row(e.id, topic, e.key, e.encode(), e.headers()) for e in envelopes]
    if rows:
        append(session, OUTBOX, rows)


def send_raw(
    session: AsyncSession, *, topic: str, key: bytes | None, value: bytes, headers: Headers
) -> None:
    """Queue a message whose bytes are not an envelope (a dead letter keeps the original bytes)."""
    append(session, OUTBOX, [_row(uuid.uuid4(), topic, key, value, headers)])
