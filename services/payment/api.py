"""payment-service HTTP API: accounts and the charges sagas made."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from sagaline.http.api import Identifier, StrictModel, get_or_404
from sagaline.http.money import Amount, from_cents, to_cents
from sagaline.service import Runtime, runtime_of
from sagaline.services.payment.models import Account, Charge, ChargeStatus

router = APIRouter(tags=["payment"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class AccountIn(StrictModel):
    id: Identifier
    balance: Amount


class AccountOut(BaseModel):
    id: str
    balance: Decimal
    initial_balance: Decimal
    created_at: datetime


class ChargeOut(BaseModel):
    saga_id: uuid.UUID
    customer_id: str
    amount: Decimal
    status: ChargeStatus
    charged_at: datetime
    refunded_at: datetime | None


def _account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        balance=from_cents(account.balance_cents),
        initial_balance=from_cents(account.initial_balance_cents),
        created_at=account.created_at,
    )


@router.post("/accounts", status_code=201, response_model=AccountOut)
async def create_account(body: AccountIn, runtime: RuntimeDep) -> AccountOut:
    cents = to_cents(body.balance)
    account = Account(id=body.id, balance_cents=cents, initial_balance_cents=cents)
    try:
        async with runtime.db.transaction() as session:
            session.add(account)
    except IntegrityError as exc:
        raise HTTPException(409, f"account {body.id} already exists") from exc
    return _account_out(account)


@router.get("/accounts/{account_id}", response_model=AccountOut)
async def get_account(account_id: str, runtime: RuntimeDep) -> AccountOut:
    account = await get_or_404(runtime.db, Account, account_id, "account")
    return _account_out(account)


@router.get("/charges/{saga_id}", response_model=ChargeOut)
async def get_charge(saga_id: uuid.UUID, runtime: RuntimeDep) -> ChargeOut:
    charge = await get_or_404(runtime.db, Charge, saga_id, "charge for saga")
    return ChargeOut(
        saga_id=charge.saga_id,
        customer_id=charge.customer_id,
        amount=from_cents(charge.amount_cents),
        status=charge.status,
        charged_at=charge.charged_at,
        refunded_at=charge.refunded_at,
    )
