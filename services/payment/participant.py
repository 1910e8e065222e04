"""The payment step: charge the customer's account; compensation refunds it."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import utcnow
from services.common.participant import Applied, Participant, Rejected
from services.payment.models import Account, Charge, ChargeStatus


class ChargeCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")
    customer_id: str = Field(min_length=1, max_length=64)
    total_cents: int = Field(ge=0)


class PaymentParticipant(Participant):
    step = "payment"
    command_payload = ChargeCommand

    async def apply(
        self, session: AsyncSession, saga_id: uuid.UUID, command: ChargeCommand
    ) -> Applied | Rejected:
        # One conditional UPDATE: concurrent sagas of one customer can never overdraw it.
        result = await session.execute(
            update(Account)
            .where(
                Account.id == command.customer_id,  # type: ignore[arg-type]
                Account.balance_cents >= command.total_cents,  # type: ignore[arg-type]
            )
            .values(balance_cents=Account.balance_cents - command.total_cents)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            account = await session.get(Account, command.customer_id)
            if account is None:
                return Rejected(f"unknown customer {command.customer_id}")
            return Rejected(f"insufficient funds for customer {command.customer_id}")
        session.add(
            Charge(
                saga_id=saga_id,
                customer_id=command.customer_id,
                amount_cents=command.total_cents,
                status=ChargeStatus.CHARGED,
            )
        )
        return Applied({"customer_id": command.customer_id, "charged_cents": command.total_cents})

    async def undo(self, session: AsyncSession, saga_id: uuid.UUID) -> None:
        charge = await session.get(Charge, saga_id)
        if charge is None or charge.status is ChargeStatus.REFUNDED:
            return
        charge.status, charge.refunded_at = ChargeStatus.REFUNDED, utcnow()
        await session.execute(
            update(Account)
            .where(Account.id == charge.customer_id)  # type: ignore[arg-type]
            .values(balance_cents=Account.balance_cents + charge.amount_cents)
        )
