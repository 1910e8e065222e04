"""What a step's `apply` and `undo` are given: the saga they work for, and either the consumer's
transaction (a transactional step) or an HTTP client keyed for the call (a calling step)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery.participant import Batch

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class StepContext:
    """A transactional step's: its work is part of the consumer's transaction (`session`), with
    the batch's helpers (`batch.cache`, `batch.insert`, `batch.update`). It must not call out."""

    saga_id: uuid.UUID
    step: str
    batch: Batch

    @property
    def session(self) -> AsyncSession:
        return self.batch.session


@dataclass(frozen=True)
class CallContext:
    """A calling step's: no transaction is open. `http` sends every request with the header
    `Idempotency-Key: <idempotency_key>` and the step's time-out; the key is the same for every
    try of this apply (or undo) of this saga, so that a partner that keeps its keys acts once.
    `apply_key` is the apply's key, for an undo that cancels by it; `tries` counts this call's
    tries so far (from 1)."""

    saga_id: uuid.UUID
    step: str
    idempotency_key: str
    apply_key: str
    tries: int
    http: httpx.AsyncClient


class SharedPool(httpx.AsyncBaseTransport):
    """One connection pool for every call of a step; each call's client borrows it (closing
    that client leaves the pool open)."""

    def __init__(self, pool: httpx.AsyncBaseTransport | None = None) -> None:
        self.pool = pool or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        """Left open: the pool outlives each call's client."""


def keyed_client(pool: SharedPool, key: str, timeout_s: float, **options: Any) -> httpx.AsyncClient:
    """A client whose requests carry the idempotency key, over the shared pool."""
    return httpx.AsyncClient(
        transport=pool, headers={IDEMPOTENCY_HEADER: key}, timeout=timeout_s, **options
    )
