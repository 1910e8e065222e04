"""The stock step: reserve every item of the order, or none; compensation releases them."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common.clock import utcnow
from services.common.db import batch_cache, load_locked
from services.common.participant import Applied, Participant, Rejected
from services.stock.models import Product, Reservation, ReservationStatus


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
        self, session: AsyncSession, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        reservations = batch_cache(session, "reservations")
        wanted = compensations - set(reservations)
        if wanted:
            rows = await session.scalars(
                select(Reservation).where(col(Reservation.saga_id).in_(wanted))
            )
            reservations.update((saga_id, []) for saga_id in wanted)
            for row in rows:
                reservations[row.saga_id].append(row)
        products = {item.product_id for command in commands.values() for item in command.items}
        products |= {r.product_id for rows in reservations.values() for r in rows}
        # Locked rows in one order: concurrent batches of other replicas wait, never deadlock.
        await load_locked(session, Product, Product.id, products, batch_cache(session, "products"))

    def apply(
        self, session: AsyncSession, saga_id: uuid.UUID, command: ReserveCommand
    ) -> Applied | Rejected:
        products: dict[str, Product | None] = batch_cache(session, "products")
        wanted = command.wanted()
        unknown = sorted(p for p in wanted if products.get(p) is None)
        if unknown:
            return Rejected(f"unknown product {', '.join(unknown)}")
        short = sorted(p for p, quantity in wanted.items() if products[p].quantity < quantity)  # type: ignore[union-attr]
        if short:
            return Rejected(f"out of stock: product {', '.join(short)}")
        now = utcnow()
        reservations = []
        for product_id, quantity in sorted(wanted.items()):
            products[product_id].quantity -= quantity  # type: ignore[union-attr]
            reservations.append(
                Reservation(
                    saga_id=saga_id,
                    product_id=product_id,
                    quantity=quantity,
                    status=ReservationStatus.RESERVED,
                    reserved_at=now,
                )
            )
        session.add_all(reservations)
        batch_cache(session, "reservations")[saga_id] = reservations
        return Applied({"reserved": dict(wanted)})

    def undo(self, session: AsyncSession, saga_id: uuid.UUID) -> None:
        products: dict[str, Product] = batch_cache(session, "products")
        now = utcnow()
        for reservation in batch_cache(session, "reservations").get(saga_id, []):
            if reservation.status is ReservationStatus.RESERVED:
                reservation.status, reservation.released_at = ReservationStatus.RELEASED, now
                products[reservation.product_id].quantity += reservation.quantity
