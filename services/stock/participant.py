"""The stock step, written with the SDK: reserve every item of the order, or none; compensation
releases them. Both run in the consumer's transaction (a transactional step)."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table

from sagaline.domain.clock import utcnow
from sagaline.sdk import Batch, Rejected, Step, StepContext
from sagaline.services.registry import PORTS
from sagaline.services.stock.api import router
from sagaline.services.stock.models import Product, Reservation, ReservationStatus
from sagaline.storage.db import select_locked, select_locked_into
from sagaline.storage.tables import table_of

PRODUCTS: Table = table_of(Product)
RESERVATIONS: Table = table_of(Reservation)


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)


class ReserveCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")
    items: list[Item] = Field(min_length=1)

    def wanted(self) -> Counter[str]:
        wanted: Counter[str] = Counter()
        for item in self.items:
            wanted[item.product_id] += item.quantity
        return wanted


stock = Step(
    "stock",
    command=ReserveCommand,
    router=router,
    migrations=Path(__file__).resolve().parent / "migrations",
    port=PORTS["stock"],
)


@stock.load
async def lock(batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]) -> None:
    reservations = batch.cache("reservations")
    wanted = compensations - reservations.keys()
    rows = await select_locked(batch.session, RESERVATIONS, "saga_id", wanted)
    reservations.update((saga_id, []) for saga_id in wanted)
    for row in rows:
        reservations[row["saga_id"]].append(row)
    ids = {item.product_id for command in commands.values() for item in command.items}
    ids |= {r["product_id"] for rows in reservations.values() for r in rows}
    # Locked rows in one order: concurrent batches of other replicas wait, never deadlock.
    await select_locked_into(batch.session, PRODUCTS, "id", ids, batch.cache("products"))


@stock.apply
async def reserve(ctx: StepContext, command: ReserveCommand) -> dict[str, Any] | Rejected:
    batch = ctx.batch
    products: dict[str, dict[str, Any] | None] = batch.cache("products")
    wanted = command.wanted()
    found = {product_id: products.get(product_id) for product_id in wanted}
    unknown = sorted(product_id for product_id, row in found.items() if row is None)
    if unknown:
        return Rejected(f"unknown product {', '.join(unknown)}")
    rows = {product_id: row for product_id, row in found.items() if row is not None}
    short = sorted(p for p, quantity in wanted.items() if rows[p]["quantity"] < quantity)
    if short:
        return Rejected(f"out of stock: product {', '.join(short)}")
    now = utcnow()
    reservations = []
    for product_id, quantity in sorted(wanted.items()):
        product = rows[product_id]
        product["quantity"] -= quantity
        batch.update(PRODUCTS, product, key=("id",), columns=("quantity",))
        reservation = {
            "saga_id": ctx.saga_id,
            "product_id": product_id,
            "quantity": quantity,
            "status": ReservationStatus.RESERVED,
            "reserved_at": now,
            "released_at": None,
        }
        batch.insert(RESERVATIONS, reservation)
        reservations.append(reservation)
    batch.cache("reservations")[ctx.saga_id] = reservations
    return {"reserved": dict(wanted)}


@stock.undo
async def release(ctx: StepContext, result: dict[str, Any] | None) -> None:
    batch = ctx.batch
    products: dict[str, dict[str, Any]] = batch.cache("products")
    now = utcnow()
    for reservation in batch.cache("reservations").get(ctx.saga_id, []):
        if reservation["status"] is ReservationStatus.RESERVED:
            reservation.update(status=ReservationStatus.RELEASED, released_at=now)
            key, columns = ("saga_id", "product_id"), ("status", "released_at")
            batch.update(RESERVATIONS, reservation, key=key, columns=columns)
            product = products[reservation["product_id"]]
            product["quantity"] += reservation["quantity"]
            batch.update(PRODUCTS, product, key=("id",), columns=("quantity",))
