"""The invariants of docs/design.md ("Invariants"), checked across the four databases after
quiescence."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

from sagaline.storage.db import sync_url

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


def rows(url: str, *queries: str) -> list[list[Any]]:
    """The rows of each query, read from one database over one connection."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return [list(connection.execute(text(query)).all()) for query in queries]
    finally:
        engine.dispose()


def verify(urls: dict[str, str]) -> Report:
    [order_rows] = rows(urls["order"], "SELECT id, status, total_cents FROM orders")
    orders = {str(r[0]): (r[1], r[2]) for r in order_rows}
    [saga_rows] = rows(urls["orchestrator"], "SELECT id, status FROM saga")
    sagas = {str(r[0]): r[1] for r in saga_rows}
    accounts, charges = rows(
        urls["payment"],
        "SELECT id, balance_cents, initial_balance_cents FROM account",
        "SELECT saga_id, customer_id, amount_cents, status FROM charge",
    )
    products, reservations = rows(
        urls["stock"],
        "SELECT id, quantity, initial_quantity FROM product",
        "SELECT saga_id, product_id, quantity, status FROM reservation",
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

    totals = {oid: total for oid, (_, total) in orders.items()}
    _check_ledger(
        report,
        approved,
        charges,
        accounts,
        effect="charge",
        standing="CHARGED",
        holder="account",
        measure="balance",
    )
    for saga_id, _, amount, status in charges:
        sid = str(saga_id)
        if status == "CHARGED" and sid in approved and totals[sid] != amount:
            report.violate(
                "each approved order is charged its total",
                f"saga {sid}: charged {amount}, total {totals[sid]}",
            )
    _check_ledger(
        report,
        approved,
        reservations,
        products,
        effect="reservation",
        standing="RESERVED",
        holder="product",
        measure="stock",
    )
    return report


def _check_ledger(
    report: Report,
    approved: set[str],
    effects: list[Any],
    holders: list[Any],
    *,
    effect: str,
    standing: str,
    holder: str,
    measure: str,
) -> None:
    """One participant's books: every standing effect belongs to an APPROVED order, every
    APPROVED order has one, and each holder's amount is its initial minus the approved effects
    (an effect applied twice, or never undone, breaks that equation)."""
    taken: dict[str, int] = defaultdict(int)
    with_effect: set[str] = set()
    for saga_id, holder_id, amount, status in effects:
        sid = str(saga_id)
        if status != standing:
            continue
        with_effect.add(sid)
        if sid in approved:
            taken[holder_id] += amount
        else:
            report.violate(
                f"no {effect} stands without an APPROVED order",
                f"saga {sid}: {amount} of {holder} {holder_id}",
            )
    for oid in sorted(approved - with_effect):
        report.violate(f"each approved order has its {effect}", f"order {oid} has none")
    for holder_id, now, initial in holders:
        expected = initial - taken.get(holder_id, 0)
        if now != expected:
            report.violate(
                f"{measure} = initial - approved {effect}s",
                f"{holder} {holder_id}: {now} != {expected}",
            )
