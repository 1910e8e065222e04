"""order-service HTTP API: place an order, read orders."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.http.api import PAGE_LIMIT, Identifier, StrictModel, count_by
from sagaline.http.limits import LIMITS
from sagaline.http.money import PositiveAmount, from_cents, to_cents
from sagaline.http.prefer import MAX_WAIT_S, preferred_wait
from sagaline.service import Runtime, runtime_of
from sagaline.services.order.handler import OrderSagaInitiator
from sagaline.services.order.models import OrderStatus
from sagaline.services.order.rows import BY_ID, ORDERS, OrderRow, new_order

router = APIRouter(tags=["orders"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class OrderItemIn(StrictModel):
    product_id: Identifier
    quantity: int = Field(gt=0, le=LIMITS.max_item_quantity, strict=True)
    unit_price: PositiveAmount


class OrderIn(StrictModel):
    customer_id: Identifier
    items: list[OrderItemIn] = Field(min_length=1, max_length=LIMITS.max_order_items)


class OrderItemOut(BaseModel):
    product_id: str
    quantity: int
    unit_price: Decimal


class OrderOut(BaseModel):
    id: uuid.UUID
    customer_id: str
    items: list[OrderItemOut]
    total: Decimal
    status: OrderStatus
    reason: str | None
    created_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, order: OrderRow) -> OrderOut:
        return cls(
            id=order["id"],
            customer_id=order["customer_id"],
            items=[
                OrderItemOut(
                    product_id=item["product_id"],
                    quantity=item["quantity"],
                    unit_price=from_cents(item["unit_price_cents"]),
                )
                for item in order["items"]
            ],
            total=from_cents(order["total_cents"]),
            status=order["status"],
            reason=order["reason"],
            created_at=order["created_at"],
            decided_at=order["decided_at"],
        )


@router.post("/orders", status_code=201, response_model=OrderOut)
async def place_order(
    body: OrderIn,
    runtime: RuntimeDep,
    response: Response,
    prefer: Annotated[
        str | None,
        Header(description="`wait=N`: answer once the order is decided, or after N seconds"),
    ] = None,
) -> OrderOut:
    """Place an order. With `Prefer: wait=N` (RFC 7240) the answer waits up to N seconds for
    the decision: one request instead of a POST and a long-polling GET."""
    items: list[dict[str, object]] = [
        {
            "product_id": item.product_id,
            "quantity": item.quantity,
            "unit_price_cents": to_cents(item.unit_price),
        }
        for item in body.items
    ]
    total = sum(item.quantity * to_cents(item.unit_price) for item in body.items)
    order = new_order(body.customer_id, items, total)
    initiator = runtime.handler
    assert isinstance(initiator, OrderSagaInitiator)

    async def write(session: AsyncSession) -> None:
        initiator.start(session, order)

    await initiator.committer(runtime.db).run(write)
    wait = preferred_wait(prefer)
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
        decided = await initiator.waiters.decision(order["id"], wait, placed_here=True)
        if decided is not None:
            return OrderOut.of(decided)
    return OrderOut.of(order)


@router.get("/orders/summary")
async def summary(runtime: RuntimeDep) -> dict[str, int]:
    async with runtime.db.reads() as session:
        counts = await count_by(session, ORDERS.c.status)
    return {status: counts.get(status, 0) for status in OrderStatus} | {
        "total": sum(counts.values())
    }


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(
    order_id: uuid.UUID,
    runtime: RuntimeDep,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for a decision")
    ] = 0,
) -> OrderOut:
    """The order; with `wait`, answered as soon as it is decided (or when `wait` runs out)."""
    initiator = runtime.handler
    assert isinstance(initiator, OrderSagaInitiator)
    deadline = time.monotonic() + wait
    decided = await initiator.waiters.decision(order_id, wait) if wait else None
    if decided is not None:  # decided here, or placed here and decided while waiting: no read
        return OrderOut.of(decided)
    while True:
        order = await _read_order(runtime, order_id)
        remaining = deadline - time.monotonic()
        if order["status"] is not OrderStatus.PENDING or remaining <= 0:
            return OrderOut.of(order)
        decided = await initiator.waiters.wait(order_id, remaining)
        if decided is not None:
            return OrderOut.of(decided)


@router.get("/orders", response_model=list[OrderOut])
async def list_orders(
    runtime: RuntimeDep,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[OrderOut]:
    query = select(ORDERS).order_by(ORDERS.c.created_at, ORDERS.c.id)
    if status is not None:
        query = query.where(ORDERS.c.status == status)
    async with runtime.db.reads() as session:
        orders = (await session.execute(query.limit(limit).offset(offset))).mappings().all()
    return [OrderOut.of(dict(order)) for order in orders]


async def _read_order(runtime: Runtime, order_id: uuid.UUID) -> OrderRow:
    async with runtime.db.reads() as session:
        order = (await session.execute(BY_ID, {"id": order_id})).mappings().first()
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    return dict(order)
