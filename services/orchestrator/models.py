"""Orchestrator tables: one row per saga (its engine state as JSON) and its history."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, text
from sqlmodel import Field, SQLModel

from sagaline.domain.clock import utcnow


class Origin(StrEnum):
    """Who started a saga: the initiator (a saga.start, answered on orchestrator.response) or
    a caller of `POST /sagas` (who reads the outcome from `GET /sagas/{id}`: none is sent)."""

    INITIATOR = "initiator"
    API = "api"


class Saga(SQLModel, table=True):
    __tablename__ = "saga"

    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=63)
    status: str = Field(max_length=16, index=True)
    execution: str = Field(max_length=16)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    reason: str | None = Field(default=None, max_length=1000)
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    next_deadline: datetime | None = Field(default=None, index=True)
    # The W3C traceparent of the span that started the saga (None with tracing off): the timer's
    # work for this saga continues that trace.
    traceparent: str | None = Field(default=None, max_length=55)
    # Each step's result (the payload of its done reply), by step: merged into the commands of
    # the steps after it (sequential execution) and handed to its compensation.
    results: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=text("'{}'")),
    )
    origin: str = Field(
        default=Origin.INITIATOR, max_length=16, sa_column_kwargs={"server_default": "initiator"}
    )
    # How many times in a row its processing raised: above zero, its inputs are parked (in
    # `saga_parked`, in order) for its retry, which re-drives them (docs/design.md, "A stuck saga").
    failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})

    # The digest of the definition version the saga runs on to its end (a `saga_version` row);
    # None for a saga written before versions were kept: it runs on the current definition.
    version: str | None = Field(default=None, max_length=64)


class SagaEvent(SQLModel, table=True):
    """What the orchestrator sent and received for a saga, and when."""

    __tablename__ = "saga_event"

    id: int | None = Field(default=None, primary_key=True)
    saga_id: uuid.UUID = Field(index=True)
    at: datetime = Field(default_factory=utcnow)
    direction: str = Field(max_length=8)  # sent | received | timeout
    type: str = Field(max_length=100)
    step: str | None = Field(default=None, max_length=63)
    attempt: int = 1
    message_id: uuid.UUID | None = None
    detail: str | None = Field(default=None, max_length=1000)


class SagaParked(SQLModel, table=True):
    """An input of a saga whose processing raised (or of one already in that state), kept for
    its retry: a reply, a start or cancel (`envelope`), or a step's dead letter (`envelope`
    None: the topic it was dead-lettered from, `origin`, and why, `reason`)."""

    __tablename__ = "saga_parked"

    id: int | None = Field(default=None, primary_key=True)
    saga_id: uuid.UUID = Field(index=True)
    parked_at: datetime = Field(default_factory=utcnow)
    topic: str = Field(max_length=249)
    envelope: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    origin: str | None = Field(default=None, max_length=249)
    reason: str | None = Field(default=None, max_length=1000)


class SagaVersion(SQLModel, table=True):
    """A definition version the orchestrator has run sagas by (docs/design.md, "Changing a live
    Saga"): its digest, the Saga's name, the canonical document it is the digest of, and when an
    orchestrator first started with it."""

    __tablename__ = "saga_version"

    digest: str = Field(primary_key=True, max_length=64)
    saga: str = Field(max_length=63)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    first_seen: datetime = Field(default_factory=utcnow)
