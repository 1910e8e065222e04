"""Order-service tables: the orders, each the initiator of one saga (order id = saga id)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from sagaline.domain.clock import utcnow
from sagaline.domain.initiator import OrderStatus
from sagaline.storage.tables import status_type

__all__ = ["Order", "OrderStatus"]


class Order(SQLModel, table=True):
    __tablename__ = "orders"

    id: uuid.UUID = Field(primary_key=True)
    customer_id: str = Field(max_length=64, index=True)
    items: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    total_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: OrderStatus = Field(sa_type=status_type(OrderStatus), index=True)
    reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    decided_at: datetime | None = None
    start_attempt: int = 1
    cancel_attempt: int = 0  # the start given up, the cancels sent since
    resend_at: datetime | None = Field(default=None, index=True)
    # The W3C traceparent of the request that placed the order (None with tracing off): the
    # re-sends of its start and its cancels continue that trace.
    traceparent: str | None = Field(default=None, max_length=55)
