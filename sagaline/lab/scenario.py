"""The demo's world: customers, products and a mix of orders whose outcome is known in advance."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

RICH_CUSTOMERS = 20
PRODUCTS = 20
RICH_BALANCE = "1000000.00"
STOCK = 1_000_000

APPROVED = "approved"
INSUFFICIENT_FUNDS = "insufficient funds"
OUT_OF_STOCK = "out of stock"
UNKNOWN_PRODUCT = "unknown product"
# Of every ten orders: seven approved, one of each kind of rejection.
MIX = [APPROVED] * 7 + [INSUFFICIENT_FUNDS, OUT_OF_STOCK, UNKNOWN_PRODUCT]


@dataclass(frozen=True)
class PlannedOrder:
    body: dict[str, Any]
    expect: str


@dataclass(frozen=True)
class Scenario:
    accounts: list[dict[str, Any]]
    products: list[dict[str, Any]]
    orders: list[PlannedOrder]


def plan(orders: int, *, seed: int, run_id: str) -> Scenario:
    rng = random.Random(seed)
    rich = [f"{run_id}-c{i:03d}" for i in range(RICH_CUSTOMERS)]
    broke = f"{run_id}-broke"
    stocked = [f"{run_id}-p{i:03d}" for i in range(PRODUCTS)]
    sold_out = f"{run_id}-sold-out"
    accounts = [{"id": c, "balance": RICH_BALANCE} for c in rich] + [{"id": broke, "balance": "0"}]
    products = [{"id": p, "quantity": STOCK} for p in stocked] + [{"id": sold_out, "quantity": 0}]

    expectations = [MIX[i % len(MIX)] for i in range(orders)]
    rng.shuffle(expectations)
    planned = []
    for expect in expectations:
        items = [
            {
                "product_id": rng.choice(stocked),
                "quantity": rng.randint(1, 5),
                "unit_price": f"{rng.randint(100, 10000) / 100:.2f}",
            }
            for _ in range(rng.randint(1, 3))
        ]
        customer = rng.choice(rich)
        if expect == INSUFFICIENT_FUNDS:
            customer = broke
        elif expect == OUT_OF_STOCK:
            items[0]["product_id"] = sold_out
        elif expect == UNKNOWN_PRODUCT:
            items[0]["product_id"] = f"{run_id}-no-such-product"
        planned.append(PlannedOrder({"customer_id": customer, "items": items}, expect))
    return Scenario(accounts, products, planned)


def classify(status: str, reason: str | None) -> str:
    """The demo's name for an order's outcome."""
    if status == "APPROVED":
        return APPROVED
    if status != "REJECTED":
        return status.lower()
    text = (reason or "").lower()
    for kind in (INSUFFICIENT_FUNDS, OUT_OF_STOCK, UNKNOWN_PRODUCT):
        if kind in text:
            return kind
    return "other"
