"""The message envelope: one JSON schema for every topic.

`id` is the dedup key; the Kafka key is the saga id, so one saga's messages stay in order on one
partition. Kafka headers carry `type` and a W3C `traceparent` whose trace id is the saga id, so
every message of one saga joins one trace.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$"
Headers = list[tuple[str, bytes]]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(pattern=TYPE_PATTERN, max_length=100)
    saga_id: uuid.UUID
    saga: str = Field(min_length=1, max_length=63)
    step: str | None = Field(None, max_length=63)
    attempt: int = Field(1, ge=1, le=1000)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> bytes:
        return str(self.saga_id).encode()

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self) -> Headers:
        return [("type", self.type.encode()), ("traceparent", traceparent(self).encode())]

    @classmethod
    def decode(cls, value: bytes | None) -> Envelope:
        if value is None:
            raise ValueError("empty message value")
        return cls.model_validate_json(value)


def traceparent(envelope: Envelope) -> str:
    return f"00-{envelope.saga_id.hex}-{envelope.id.hex[:16]}-01"


def header_value(headers: Any, name: str) -> str | None:
    """A header's value decoded as UTF-8 (aiokafka gives headers as (name, bytes) pairs)."""
    for key, value in headers or ():
        if key == name and value is not None:
            return bytes(value).decode("utf-8", "replace")
    return None
