"""The invariants of DESIGN.md, checked across the four databases after quiescence."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

from services.common.db import sync_url

SAMPLE = 5


@dataclass
class Report:
    checked: dict[str, int] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violate(self, invariant: str, detail: str) -> None:
        self.violations.setdefault(invariant, []).append(detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "violations": {
                k: {"count": len(v), "sample": v[:SAMPLE]} for k, v in self.violations.items()
            },
        }


def _rows(url: str, query: str) -> list[Any]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query)).all())
    finally:
        engine.dispose()


def verify(urls: dict[str, str]) -> Report:
    orders = {
        str(r[0]): (r[1], r[2])
        for r in _rows(urls["order"], "SELECT id, status, total_cents FROM orders")
    }
    sagas = {str(r[0]): r[1] for r in _rows(urls["orchestrator"], "SELECT id, status FROM saga")}
    accounts = _rows(
        urls["payment"], "SELECT id, balance_cents, initial_balance_cents FROM account"
    )
    charges = _rows(
        urls["payment"], "SELECT saga_id, customer_id, amount_cents, status FROM charge"
    )
    products = _rows(urls["stock"], "SELECT id, quantity, initial_quantity FROM product")
    reservations = _rows(
        urls["stock"], "SELECT saga_id, product_id, quantity, status FROM reservation"
    )
    report = Report(
        checked={
            "orders": len(orders),
            "sagas": len(sagas),
            "accounts": len(accounts),
            "charges": len(charges),
            "products": len(products),
            "reservations": len(reservations),
        }
    )
    approved = {oid for oid, (status, _) in orders.items() if status == "APPROVED"}

    for oid, (status, _) in orders.items():
        if status not in ("APPROVED", "REJECTED"):
            report.violate("every order is terminal", f"order {oid} is {status}")
        saga = sagas.get(oid)
        if (status == "APPROVED") != (saga == "COMPLETED"):
            report.violate("APPROVED <=> saga COMPLETED", f"order {oid} is {status}, saga {saga}")
    for sid, status in sagas.items():
        if status == "FAILED":
            report.violate("no saga FAILED", f"saga {sid}: compensation was given up")
        elif status not in ("COMPLETED", "COMPENSATED"):
            report.violate("every saga is terminal", f"saga {sid} is {status}")
        if sid not in orders:
            report.violate("every saga has its order", f"saga {sid} has no order")

    charged: dict[str, int] = defaultdict(int)
    for saga_id, customer, amount, status in charges:
        sid = str(saga_id)
        if status == "CHARGED":
            if sid not in approved:
                report.violate(
                    "no charge stands without an APPROVED order",
                    f"saga {sid}: {amount} cents charged to {customer}",
                )
            else:
                charged[customer] += amount
                if orders[sid][1] != amount:
                    report.violate(
                        "each approved order is charged its total",
                        f"saga {sid}: charged {amount}, total {orders[sid][1]}",
                    )
    charged_sagas = {str(c[0]) for c in charges if c[3] == "CHARGED"}
    for oid in approved - charged_sagas:
        report.violate(
            "each approved order is charged its total", f"order {oid} approved without a charge"
        )
    for account_id, balance, initial in accounts:
        expected = initial - charged.get(account_id, 0)
        if balance != expected:
            report.violate(
                "balance = initial - approved charges",
                f"account {account_id}: {balance} != {expected}",
            )

    reserved: dict[str, int] = defaultdict(int)
    reserved_sagas: set[str] = set()
    for saga_id, product, quantity, status in reservations:
        sid = str(saga_id)
        if status == "RESERVED":
            reserved_sagas.add(sid)
            if sid not in approved:
                report.violate(
                    "no reservation stands without an APPROVED order",
                    f"saga {sid}: {quantity} x {product} reserved",
                )
            else:
                reserved[product] += quantity
    for oid in approved - reserved_sagas:
        report.violate(
            "each approved order has its stock reserved",
            f"order {oid} approved without a reservation",
        )
    for product_id, quantity, initial in products:
        expected = initial - reserved.get(product_id, 0)
        if quantity != expected:
            report.violate(
                "stock = initial - approved reservations",
                f"product {product_id}: {quantity} != {expected}",
            )
    return report
