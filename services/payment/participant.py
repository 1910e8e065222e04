"""The payment step: charge the customer's account; compensation refunds it."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import utcnow
from services.common.db import batch_cache, load_locked
from services.common.participant import Applied, Participant, Rejected
from services.payment.models import Account, Charge, ChargeStatus


class ChargeCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")
    customer_id: str = Field(min_length=1, max_length=64)
    total_cents: int = Field(ge=0)


class PaymentParticipant(Participant):
    step = "payment"
    command_payload = ChargeCommand

    async def load(
        self, session: AsyncSession, commands: dict[uuid.UUID, Any], compensations: set[uuid.UUID]
    ) -> None:
        charges = batch_cache(session, "charges")
        await load_locked(session, Charge, Charge.saga_id, compensations, charges)
        customers = {command.customer_id for command in commands.values()}
        customers |= {charge.customer_id for charge in charges.values() if charge is not None}
        # Locked rows in one order: concurrent batches of other replicas wait, never deadlock.
        await load_locked(session, Account, Account.id, customers, batch_cache(session, "accounts"))

    def apply(
        self, session: AsyncSession, saga_id: uuid.UUID, command: ChargeCommand
    ) -> Applied | Rejected:
        account: Account | None = batch_cache(session, "accounts").get(command.customer_id)
        if account is None:
            return Rejected(f"unknown customer {command.customer_id}")
        if account.balance_cents < command.total_cents:
            return Rejected(f"insufficient funds for customer {command.customer_id}")
        account.balance_cents -= command.total_cents
        charge = Charge(
            saga_id=saga_id,
            customer_id=command.customer_id,
            amount_cents=command.total_cents,
            status=ChargeStatus.CHARGED,
            charged_at=utcnow(),
        )
        session.add(charge)
        batch_cache(session, "charges")[saga_id] = charge
        return Applied({"customer_id": command.customer_id, "charged_cents": command.total_cents})

    def undo(self, session: AsyncSession, saga_id: uuid.UUID) -> None:
        charge: Charge | None = batch_cache(session, "charges").get(saga_id)
        if charge is None or charge.status is ChargeStatus.REFUNDED:
            return
        account: Account = batch_cache(session, "accounts")[charge.customer_id]
        charge.status, charge.refunded_at = ChargeStatus.REFUNDED, utcnow()
        account.balance_cents += charge.amount_cents
