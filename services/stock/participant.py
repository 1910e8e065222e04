"""The stock step: reserve every item of the order, or none; compensation releases them."""

from __future__ import annotations

import uuid
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import utcnow
from services.common.participant import Applied, Participant, Rejected
from services.stock.models import Product, Reservation, ReservationStatus


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)


class ReserveCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")
    items: list[Item] = Field(min_length=1)


class StockParticipant(Participant):
    step = "stock"
    command_payload = ReserveCommand

    async def apply(
        self, session: AsyncSession, saga_id: uuid.UUID, command: ReserveCommand
    ) -> Applied | Rejected:
        wanted: Counter[str] = Counter()
        for item in command.items:
            wanted[item.product_id] += item.quantity
        products = sorted(wanted)  # one lock order for every saga: no deadlock between them
        known = set(
            (
                await session.scalars(
                    select(Product.id).where(Product.id.in_(products))  # type: ignore[attr-defined]
                )
            ).all()
        )
        unknown = [p for p in products if p not in known]
        if unknown:
            return Rejected(f"unknown product {', '.join(unknown)}")
        taken: list[str] = []
        for product_id in products:
            result = await session.execute(
                update(Product)
                .where(
                    Product.id == product_id,  # type: ignore[arg-type]
                    Product.quantity >= wanted[product_id],  # type: ignore[arg-type]
                )
                .values(quantity=Product.quantity - wanted[product_id])
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                await self._give_back(session, {p: wanted[p] for p in taken})
                return Rejected(f"out of stock: product {product_id}")
            taken.append(product_id)
        session.add_all(
            Reservation(
                saga_id=saga_id,
                product_id=product_id,
                quantity=wanted[product_id],
                status=ReservationStatus.RESERVED,
            )
            for product_id in products
        )
        return Applied({"reserved": dict(wanted)})

    async def undo(self, session: AsyncSession, saga_id: uuid.UUID) -> None:
        reservations = (
            await session.scalars(
                select(Reservation).where(
                    Reservation.saga_id == saga_id,  # type: ignore[arg-type]
                    Reservation.status == ReservationStatus.RESERVED,  # type: ignore[arg-type]
                )
            )
        ).all()
        now = utcnow()
        for reservation in reservations:
            reservation.status, reservation.released_at = ReservationStatus.RELEASED, now
        await self._give_back(session, {r.product_id: r.quantity for r in reservations})

    async def _give_back(self, session: AsyncSession, quantities: dict[str, int]) -> None:
        for product_id in sorted(quantities):
            await session.execute(
                update(Product)
                .where(Product.id == product_id)  # type: ignore[arg-type]
                .values(quantity=Product.quantity + quantities[product_id])
            )
