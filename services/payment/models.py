"""Payment-service tables: customer accounts and the charges made by sagas."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from sagaline.domain.clock import utcnow
from sagaline.storage.tables import status_type


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: str = Field(primary_key=True, max_length=64)
    balance_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    initial_balance_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class ChargeStatus(StrEnum):
    CHARGED = "CHARGED"
    REFUNDED = "REFUNDED"


class Charge(SQLModel, table=True):
    """At most one charge per saga (the primary key): an effect is never applied twice."""

    __tablename__ = "charge"

    saga_id: uuid.UUID = Field(primary_key=True)
    customer_id: str = Field(max_length=64, index=True)
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: ChargeStatus = Field(sa_type=status_type(ChargeStatus))
    charged_at: datetime = Field(default_factory=utcnow)
    refunded_at: datetime | None = None
