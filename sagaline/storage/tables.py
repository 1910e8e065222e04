"""The outbox and inbox tables that every service's database carries."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Enum, Index, Integer, LargeBinary, Table, text
from sqlmodel import Field, SQLModel

from sagaline.domain.clock import utcnow


def table_of(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def status_type(enum: type[StrEnum]) -> Enum:
    """A status column stored as a short string (no PostgreSQL enum type to migrate)."""
    return Enum(enum, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class OutboxMessage(SQLModel, table=True):
    """A message owed to Kafka, written in the same transaction as the data that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    message_id: uuid.UUID
    topic: str = Field(max_length=255)
    key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None


class InboxMessage(SQLModel, table=True):
    """The id of every message a service has handled: its dedup record."""

    __tablename__ = "inbox"

    message_id: uuid.UUID = Field(primary_key=True)
    topic: str = Field(max_length=255)
    received_at: datetime = Field(default_factory=utcnow, index=True)
