"""The payment step, written with the SDK: charge the customer's account; compensation refunds
it. Both run in the consumer's transaction (a transactional step), on rows `lock` read for the
whole batch."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table

from sagaline.domain.clock import utcnow
from sagaline.sdk import Batch, Rejected, Step, StepContext
from sagaline.services.payment.api import router
from sagaline.services.payment.models import Account, Charge, ChargeStatus
from sagaline.services.registry import PORTS
from sagaline.storage.db import select_locked_into
from sagaline.storage.tables import table_of

ACCOUNTS: Table = table_of(Account)
CHARGES: Table = table_of(Charge)


class ChargeCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")
    customer_id: str = Field(min_length=1, max_length=64)
    total_cents: int = Field(ge=0)


payment = Step(
    "payment",
    command=ChargeCommand,
    router=router,
    migrations=Path(__file__).resolve().parent / "migrations",
    port=PORTS["payment"],
)


@payment.load
async def lock(batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]) -> None:
    charges = batch.cache("charges")
    await select_locked_into(batch.session, CHARGES, "saga_id", compensations, charges)
    customers = {command.customer_id for command in commands.values()}
    customers |= {charge["customer_id"] for charge in charges.values() if charge is not None}
    # Locked rows in one order: concurrent batches of other replicas wait, never deadlock.
    await select_locked_into(batch.session, ACCOUNTS, "id", customers, batch.cache("accounts"))


@payment.apply
async def charge(ctx: StepContext, command: ChargeCommand) -> dict[str, Any] | Rejected:
    batch = ctx.batch
    account: dict[str, Any] | None = batch.cache("accounts").get(command.customer_id)
    if account is None:
        return Rejected(f"unknown customer {command.customer_id}")
    if account["balance_cents"] < command.total_cents:
        return Rejected(f"insufficient funds for customer {command.customer_id}")
    account["balance_cents"] -= command.total_cents
    batch.update(ACCOUNTS, account, key=("id",), columns=("balance_cents",))
    row = {
        "saga_id": ctx.saga_id,
        "customer_id": command.customer_id,
        "amount_cents": command.total_cents,
        "status": ChargeStatus.CHARGED,
        "charged_at": utcnow(),
        "refunded_at": None,
    }
    batch.insert(CHARGES, row)
    batch.cache("charges")[ctx.saga_id] = row
    return {"customer_id": command.customer_id, "charged_cents": command.total_cents}


@payment.undo
async def refund(ctx: StepContext, result: dict[str, Any] | None) -> None:
    batch = ctx.batch
    row: dict[str, Any] | None = batch.cache("charges").get(ctx.saga_id)
    if row is None or row["status"] is ChargeStatus.REFUNDED:
        return
    account: dict[str, Any] = batch.cache("accounts")[row["customer_id"]]
    row.update(status=ChargeStatus.REFUNDED, refunded_at=utcnow())
    batch.update(CHARGES, row, key=("saga_id",), columns=("status", "refunded_at"))
    account["balance_cents"] += row["amount_cents"]
    batch.update(ACCOUNTS, account, key=("id",), columns=("balance_cents",))
