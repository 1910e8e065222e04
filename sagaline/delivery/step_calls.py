"""The calls a step owes the outside world: one row per saga while its apply or undo is pending.

A step that calls an external API cannot hold a database transaction across the call. Its
command (or compensation) is recorded here in the consumer's transaction; a worker then makes
the call with no transaction open, and records the result (and the reply) in a transaction of
its own. The row is claimed before each call (`calls` counts them and is the claim's token) and
deleted with the result, so a crash between the call and its record leaves it due again: the call
is repeated with the same idempotency key, and the partner, which keeps its keys, books once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Table
from sqlmodel import Field, SQLModel

from sagaline.domain.call_decisions import CallPhase as CallPhase
from sagaline.domain.call_decisions import idempotency_key as idempotency_key
from sagaline.domain.clock import utcnow
from sagaline.storage.tables import status_type, table_of


class StepCall(SQLModel, table=True):
    __tablename__ = "step_call"

    saga_id: uuid.UUID = Field(primary_key=True)
    saga: str = Field(max_length=63)
    attempt: int  # the command's attempt, echoed in its reply
    command: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    phase: CallPhase = Field(sa_type=status_type(CallPhase))
    calls: int = 0  # calls of this phase started so far (the claim's token)
    # Set when a compensation waits for this call: the attempt its acknowledgement echoes.
    compensation_attempt: int | None = None
    due_at: datetime = Field(default_factory=utcnow, index=True)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


STEP_CALLS: Table = table_of(StepCall)


@dataclass(frozen=True)
class CallPolicy:
    """How a step's calls are made: each try of `apply` or `undo` may take `timeout_seconds`;
    a failed try is repeated after `backoff_seconds`, doubling up to `backoff_cap_seconds`.
    `apply` is tried `max_attempts` times, then abandoned: the step cancels by the apply's key
    (its `undo` with no result) and reports a failure. `undo` is repeated until it succeeds: an
    effect left standing is worse than a late one. `concurrency` bounds the calls in flight."""

    timeout_seconds: float = 5.0
    max_attempts: int = 5
    backoff_seconds: float = 0.2
    backoff_cap_seconds: float = 30.0
    concurrency: int = 32

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0 or self.backoff_seconds <= 0 or self.concurrency < 1:
            raise ValueError("timeout_seconds and backoff_seconds must be > 0, concurrency >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff_s(self, calls: int) -> float:
        """How long to wait after the `calls`-th failed try (from 1)."""
        return min(self.backoff_seconds * 2 ** (calls - 1), self.backoff_cap_seconds)

    def lease_s(self) -> float:
        """How long a claimed call is left alone before another worker may take it over."""
        return self.timeout_seconds * 2 + 1
