"""Dead letters: the copy of a record no handler can take, why, and where it came from.

A dead letter carries the original bytes (cut to a size its relay can publish, saying so), the
original headers, and `dlt.*` headers naming the reason and the origin (topic, partition, offset).
The consumer loop writes one for poison and for what a handler refuses; the relay writes one for a
row the broker refuses for good. A record without an id of its own (poison, a dead letter) is
claimed in the inbox under `record_identity`, so reading it again does nothing new. The delivery
rules are in docs/design.md.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery import outbox
from sagaline.delivery.errors import Unprocessable
from sagaline.domain.envelope import Headers, header_value
from sagaline.telemetry.metrics import DeadLetterReason

DLT_REASON = "dlt.reason"
DLT_TOPIC = "dlt.origin.topic"
DLT_PARTITION = "dlt.origin.partition"
DLT_OFFSET = "dlt.origin.offset"
DLT_TRUNCATED = "dlt.truncated"  # the original size, when the copy had to be cut
RECORD_NAMESPACE = uuid.UUID("5a6a11e0-0000-4000-8000-000000000d17")
MAX_REASON_LENGTH = 1000
MAX_COPIED_HEADERS = 32

# A record, why it is dead-lettered, and its category.
Poison = tuple[ConsumerRecord[bytes, bytes], str, DeadLetterReason]


def describe(exc: Exception) -> str:
    """Why a message cannot be handled, as its dead letter says it."""
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
            for err in exc.errors()
        ]
        return "invalid envelope: " + "; ".join(problems)
    if isinstance(exc, Unprocessable):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def dead_letter(
    session: AsyncSession,
    topic: str,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    *,
    max_bytes: int,
) -> None:
    """Forward the original bytes with why and where they came from; the partition moves on.

    A copy over `max_bytes` is cut (and says so), or its relay could never publish it.
    """
    value, headers = dead_letter_copy(
        record.value or b"",
        record.headers,
        reason,
        origin=(str(record.topic), record.partition, record.offset),
        max_bytes=max_bytes,
    )
    outbox.send_raw(session, topic=topic, key=record.key, value=value, headers=headers)


def dead_letter_copy(
    value: bytes,
    original_headers: Sequence[tuple[str, bytes]] | None,
    reason: str,
    *,
    origin: tuple[str, int, int],
    max_bytes: int,
) -> tuple[bytes, Headers]:
    """The value and headers of a dead letter: the original bytes (cut to `max_bytes`, saying so),
    the original headers, why, and where it came from (topic, partition, offset).

    Dead-letter headers the original already carried (forged, or an earlier dead letter's) are
    kept renamed `original.dlt.*`, so that the new ones are the only ones a reader sees.
    """
    headers: Headers = [
        (f"original.{k}" if k.startswith("dlt.") else k, bytes(v))
        for k, v in (original_headers or ())
        if v is not None
    ]
    headers = headers[:MAX_COPIED_HEADERS]
    topic, partition, offset = origin
    headers += [
        (DLT_REASON, reason[:MAX_REASON_LENGTH].encode()),
        (DLT_TOPIC, topic.encode()),
        (DLT_PARTITION, str(partition).encode()),
        (DLT_OFFSET, str(offset).encode()),
    ]
    if len(value) > max_bytes:
        headers.append((DLT_TRUNCATED, str(len(value)).encode()))
        value = value[:max_bytes]
    return value, headers


def record_identity(record: ConsumerRecord[bytes, bytes]) -> uuid.UUID:
    """The inbox id of a record that carries none of its own (poison, or a dead letter).

    A dead letter is named by its origin (topic, partition, offset), so two copies of one
    dead-lettered record count once; any other record by where it was read. The content is part
    of the name: the embedded broker restarts its offsets at 0 after a restart, and a new record
    at a reused offset must not pass for the old one.
    """
    headers = record.headers
    origin = [header_value(headers, h) for h in (DLT_TOPIC, DLT_PARTITION, DLT_OFFSET)]
    if origin[0] is None:
        origin = [str(record.topic), str(record.partition), str(record.offset)]
    digest = hashlib.sha256(record.key or b"")
    digest.update(b"\0")
    digest.update(record.value or b"")
    return uuid.uuid5(RECORD_NAMESPACE, "/".join(str(part) for part in origin) + digest.hexdigest())
