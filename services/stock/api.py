"""stock-service HTTP API: products and the reservations sagas made."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from sagaline.http.api import Identifier, StrictModel, get_or_404
from sagaline.http.limits import LIMITS
from sagaline.service import Runtime, runtime_of
from sagaline.services.stock.models import Product, Reservation, ReservationStatus

router = APIRouter(tags=["stock"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class ProductIn(StrictModel):
    id: Identifier
    quantity: int = Field(ge=0, le=LIMITS.max_stock_quantity, strict=True)


class ProductOut(BaseModel):
    id: str
    quantity: int
    initial_quantity: int
    created_at: datetime


class ReservationOut(BaseModel):
    saga_id: uuid.UUID
    product_id: str
    quantity: int
    status: ReservationStatus
    reserved_at: datetime
    released_at: datetime | None


@router.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: ProductIn, runtime: RuntimeDep) -> Product:
    product = Product(id=body.id, quantity=body.quantity, initial_quantity=body.quantity)
    try:
        async with runtime.db.transaction() as session:
            session.add(product)
    except IntegrityError as exc:
        raise HTTPException(409, f"product {body.id} already exists") from exc
    return product


@router.get("/products/{product_id}", response_model=ProductOut)
async def get_product(product_id: str, runtime: RuntimeDep) -> Product:
    return await get_or_404(runtime.db, Product, product_id, "product")


@router.get("/reservations/{saga_id}", response_model=list[ReservationOut])
async def get_reservations(saga_id: uuid.UUID, runtime: RuntimeDep) -> list[Reservation]:
    async with runtime.db.reads() as session:
        rows = await session.scalars(select(Reservation).where(col(Reservation.saga_id) == saga_id))
        return list(rows.all())
