"""An order as the hot path holds it: a plain dict of its `orders` row.

Placing and deciding orders reads rows with SQLAlchemy Core and writes them with a few multi-row
statements when the transaction ends (`db.append`, `db.update_later`); building, tracking and
flushing SQLModel objects cost more than the statements. The ORM class stays for migrations.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, select

from sagaline.domain.clock import utcnow
from sagaline.services.order.models import Order, OrderStatus
from sagaline.storage.tables import table_of

ORDERS: Table = table_of(Order)
OrderRow = dict[str, Any]
RESEND_COLUMNS = ("start_attempt", "cancel_attempt", "resend_at")
DECISION_COLUMNS = ("status", "reason", "decided_at", "resend_at")
BY_ID = select(ORDERS).where(ORDERS.c.id == bindparam("id"))
DUE = (
    select(ORDERS)
    .where(ORDERS.c.status == OrderStatus.PENDING, ORDERS.c.resend_at <= bindparam("now"))
    .order_by(ORDERS.c.resend_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


def new_order(customer_id: str, items: list[dict[str, Any]], total_cents: int) -> OrderRow:
    """A PENDING order not written yet (the initiator fills in its attempts and deadline)."""
    return {
        "id": uuid.uuid4(),
        "customer_id": customer_id,
        "items": items,
        "total_cents": total_cents,
        "status": OrderStatus.PENDING,
        "reason": None,
        "created_at": utcnow(),
        "decided_at": None,
        "start_attempt": 1,
        "cancel_attempt": 0,
        "resend_at": None,
        "traceparent": None,
    }


@dataclass
class StartRecordOf:
    """The initiator's decisions' view (`decisions.StartRecord`) of an order row: they read and
    change the row itself."""

    row: OrderRow

    @property
    def status(self) -> OrderStatus:
        return OrderStatus(self.row["status"])

    @status.setter
    def status(self, value: OrderStatus) -> None:
        self.row["status"] = value

    @property
    def start_attempt(self) -> int:
        attempt: int = self.row["start_attempt"]
        return attempt

    @start_attempt.setter
    def start_attempt(self, value: int) -> None:
        self.row["start_attempt"] = value

    @property
    def cancel_attempt(self) -> int:
        attempt: int = self.row["cancel_attempt"]
        return attempt

    @cancel_attempt.setter
    def cancel_attempt(self, value: int) -> None:
        self.row["cancel_attempt"] = value
