"""A step declared outside sagaline with its SDK, as a team's own would be: a shipping step with
one table, its Alembic migration and a one-route API. sagaline knows it only through
`--step tests.unit.shipping_step:SHIPPING` (or SAGALINE_STEPS); no file of sagaline names it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from sagaline.sdk import Batch, Rejected, Step, StepContext
from sagaline.storage.db import select_locked_into
from sagaline.storage.tables import table_of


class Shipment(SQLModel, table=True):
    __tablename__ = "test_shipment"

    saga_id: uuid.UUID = Column(primary_key=True)
    address: str = Column(max_length=200)
    cancelled: bool = False


SHIPMENTS: Table = table_of(Shipment)


# A customer whose id starts so has no address to ship to: the step refuses (and the saga
# compensates the steps before it).
NO_ADDRESS_PREFIX = "noship-"


class ShipCommand(BaseModel):
    """What it reads of the saga's payload: the order's customer, and an address if given
    (unset: the one on file for the customer)."""

    model_config = ConfigDict(extra="ignore")
    customer_id: str = Field(min_length=1, max_length=64)
    address: str | None = Field(None, min_length=1, max_length=200)


router = APIRouter(tags=["shipping"])


@router.get("/shipping/ping")
async def ping() -> dict[str, str]:
    return {"shipping": "ok"}


SHIPPING = Step(
    "shipping",
    command=ShipCommand,
    router=router,
    migrations=Path(__file__).resolve().parent / "migrations",
)


@SHIPPING.load
async def lock(batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]) -> None:
    await select_locked_into(
        batch.session, SHIPMENTS, "saga_id", compensations, batch.cache("shipments")
    )


@SHIPPING.apply
async def ship(ctx: StepContext, command: ShipCommand) -> dict[str, Any] | Rejected:
    if command.customer_id.startswith(NO_ADDRESS_PREFIX):
        return Rejected(f"no address to ship to for {command.customer_id}")
    address = command.address or f"on file for {command.customer_id}"
    ctx.batch.insert(SHIPMENTS, {"saga_id": ctx.saga_id, "address": address, "cancelled": False})
    return {"address": address}


@SHIPPING.undo
async def cancel(ctx: StepContext, result: dict[str, Any] | None) -> None:
    row: dict[str, Any] | None = ctx.batch.cache("shipments").get(ctx.saga_id)
    if row is not None and not row["cancelled"]:
        row["cancelled"] = True
        ctx.batch.update(SHIPMENTS, row, key=("saga_id",), columns=("cancelled",))
