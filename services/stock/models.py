"""Stock-service tables: products and the reservations made by sagas."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from sagaline.domain.clock import utcnow
from sagaline.storage.tables import status_type


class Product(SQLModel, table=True):
    __tablename__ = "product"

    id: str = Field(primary_key=True, max_length=64)
    quantity: int
    initial_quantity: int
    created_at: datetime = Field(default_factory=utcnow)


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    RELEASED = "RELEASED"


class Reservation(SQLModel, table=True):
    """One row per (saga, product): a reservation is never applied twice."""

    __tablename__ = "reservation"

    saga_id: uuid.UUID = Field(primary_key=True)
    product_id: str = Field(primary_key=True, max_length=64, index=True)
    quantity: int
    status: ReservationStatus = Field(sa_type=status_type(ReservationStatus))
    reserved_at: datetime = Field(default_factory=utcnow)
    released_at: datetime | None = None
