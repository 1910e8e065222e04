"""The payment step: charge the customer's account; compensation refunds it."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table

from sagaline.delivery.participant import Applied, Batch, Participant, Rejected
from sagaline.domain.clock import utcnow
from sagaline.services.payment.models import Account, Charge, ChargeStatus
from sagaline.storage.db import select_locked_into
from sagaline.storage.tables import table_of

ACCOUNTS: Table = table_of(Account)
CHARGES: Table = table_of(Charge)


class ChargeCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")
    customer_id: str = Field(min_length=1, max_length=64)
    total_cents: int = Field(ge=0)


class PaymentParticipant(Participant):
    step = "payment"
    command_payload = ChargeCommand

    async def load(
        self, batch: Batch, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        charges = batch.cache("charges")
        await select_locked_into(batch.session, CHARGES, "saga_id", compensations, charges)
        customers = {command.customer_id for command in commands.values()}
        customers |= {charge["customer_id"] for charge in charges.values() if charge is not None}
        # Locked rows in one order: concurrent batches of other replicas wait, never deadlock.
        await select_locked_into(batch.session, ACCOUNTS, "id", customers, batch.cache("accounts"))

    def apply(self, batch: Batch, saga_id: uuid.UUID, command: ChargeCommand) -> Applied | Rejected:
        account: dict[str, Any] | None = batch.cache("accounts").get(command.customer_id)
        if account is None:
            return Rejected(f"unknown customer {command.customer_id}")
        if account["balance_cents"] < command.total_cents:
            return Rejected(f"insufficient funds for customer {command.customer_id}")
        account["balance_cents"] -= command.total_cents
        batch.update(ACCOUNTS, account, key=("id",), columns=("balance_cents",))
        charge = {
            "saga_id": saga_id,
            "customer_id": command.customer_id,
            "amount_cents": command.total_cents,
            "status": ChargeStatus.CHARGED,
            "charged_at": utcnow(),
            "refunded_at": None,
        }
        batch.insert(CHARGES, charge)
        batch.cache("charges")[saga_id] = charge
        return Applied({"customer_id": command.customer_id, "charged_cents": command.total_cents})

    def undo(self, batch: Batch, saga_id: uuid.UUID) -> None:
        charge: dict[str, Any] | None = batch.cache("charges").get(saga_id)
        if charge is None or charge["status"] is ChargeStatus.REFUNDED:
            return
        account: dict[str, Any] = batch.cache("accounts")[charge["customer_id"]]
        charge.update(status=ChargeStatus.REFUNDED, refunded_at=utcnow())
        batch.update(CHARGES, charge, key=("saga_id",), columns=("status", "refunded_at"))
        account["balance_cents"] += charge["amount_cents"]
        batch.update(ACCOUNTS, account, key=("id",), columns=("balance_cents",))
