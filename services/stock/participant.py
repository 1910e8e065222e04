"""The stock step: reserve every item of the order, or none; compensation releases them."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table

from sagaline.delivery.participant import Applied, Batch, Participant, Rejected
from sagaline.domain.clock import utcnow
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


class StockParticipant(Participant):
    step = "stock"
    command_payload = ReserveCommand

    async def load(
        self, batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
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

    def apply(
        self, batch: Batch, saga_id: uuid.UUID, command: ReserveCommand
    ) -> Applied | Rejected:
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
                "saga_id": saga_id,
                "product_id": product_id,
                "quantity": quantity,
                "status": ReservationStatus.RESERVED,
                "reserved_at": now,
                "released_at": None,
            }
            batch.insert(RESERVATIONS, reservation)
            reservations.append(reservation)
        batch.cache("reservations")[saga_id] = reservations
        return Applied({"reserved": dict(wanted)})

    def undo(self, batch: Batch, saga_id: uuid.UUID) -> None:
        products: dict[str, dict[str, Any]] = batch.cache("products")
        now = utcnow()
        for reservation in batch.cache("reservations").get(saga_id, []):
            if reservation["status"] is ReservationStatus.RESERVED:
                reservation.update(status=ReservationStatus.RELEASED, released_at=now)
                key, columns = ("saga_id", "product_id"), ("status", "released_at")
                batch.update(RESERVATIONS, reservation, key=key, columns=columns)
                product = products[reservation["product_id"]]
                product["quantity"] += reservation["quantity"]
                batch.update(PRODUCTS, product, key=("id",), columns=("quantity",))
