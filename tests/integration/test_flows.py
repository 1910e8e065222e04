"""End to end through the four services, sequential execution, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.lab.stack import Stack
from sagaline.lab.verify import verify
from sagaline.storage.db import sync_url
from tests.integration.support import Api


def types_of(saga: dict, direction: str) -> list[str]:
    return [event["type"] for event in saga["history"] if event["direction"] == direction]


async def test_approved_order_charges_and_reserves(api: Api) -> None:
    customer = await api.account("100.00")
    product = await api.product(10)

    order = await api.order(customer, (product, 2, "10.50"))
    assert order["status"] == "PENDING"
    decided = await api.decided(order["id"])

    assert decided["status"] == "APPROVED", decided
    assert decided["reason"] is None
    assert await api.balance(customer) == "79.00"
    assert await api.stock(product) == 8
    charge = (await api.get("payment", f"/charges/{order['id']}")).json()
    assert (charge["status"], charge["amount"]) == ("CHARGED", "21.00")
    saga = await api.saga(order["id"])
    assert saga["status"] == "COMPLETED"
    assert types_of(saga, "sent") == ["payment.charge", "stock.reserve", "saga.completed"]
    assert types_of(saga, "received") == ["saga.start", "payment.charged", "stock.reserved"]


async def test_placing_with_prefer_wait_answers_with_the_decision(api: Api) -> None:
    """`Prefer: wait=N` (RFC 7240): one request places the order and hears its decision; the
    GET long poll then answers from what this replica decided, without reading it."""
    customer = await api.account("100.00")
    product = await api.product(10)
    body = {
        "customer_id": customer,
        "items": [{"product_id": product, "quantity": 1, "unit_price": "3.00"}],
    }
    response = await api.client.post(
        api.url("order", "/orders"), json=body, headers={"Prefer": "respond-async, wait=20"}
    )

    assert response.status_code == 201, response.text
    assert response.headers["Preference-Applied"] == "wait=20"
    order = response.json()
    assert (order["status"], order["decided_at"] is not None) == ("APPROVED", True)
    polled = await api.get("order", f"/orders/{order['id']}?wait=5")
    assert polled.json() == order
    assert await api.balance(customer) == "97.00"


async def test_payment_rejected_leaves_stock_untouched(api: Api) -> None:
    customer = await api.account("5.00")
    product = await api.product(10)

    order = await api.order(customer, (product, 1, "10.00"))
    decided = await api.decided(order["id"])

    assert decided["status"] == "REJECTED"
    assert "insufficient funds" in decided["reason"]
    assert await api.balance(customer) == "5.00"
    assert await api.stock(product) == 10
    assert (await api.get("payment", f"/charges/{order['id']}")).status_code == 404
    saga = await api.saga(order["id"])
    assert saga["status"] == "COMPENSATED"
    assert "stock.reserve" not in types_of(saga, "sent")


async def test_stock_rejected_after_payment_refunds_exactly_once(api: Api) -> None:
    customer = await api.account("100.00")
    product = await api.product(1)

    order = await api.order(customer, (product, 2, "10.00"))
    decided = await api.decided(order["id"])

    assert decided["status"] == "REJECTED"
    assert "out of stock" in decided["reason"]
    saga = await api.saga_status(order["id"], "COMPENSATED")
    assert types_of(saga, "received").count("payment.compensated") == 1
    charge = (await api.get("payment", f"/charges/{order['id']}")).json()
    assert charge["status"] == "REFUNDED"
    assert await api.balance(customer) == "100.00"  # a second refund would show here
    assert await api.stock(product) == 1


async def test_unknown_product_is_rejected_and_refunded(api: Api) -> None:
    customer = await api.account("50.00")

    order = await api.order(customer, ("no-such-product", 1, "10.00"))
    decided = await api.decided(order["id"])

    assert decided["status"] == "REJECTED"
    assert "unknown product no-such-product" in decided["reason"]
    assert await api.balance(customer) == "50.00"


async def test_orders_list_and_filter(api: Api) -> None:
    customer = await api.account("10.00")
    product = await api.product(1)
    order = await api.order(customer, (product, 1, "1.00"))
    await api.decided(order["id"])

    approved = (await api.get("order", "/orders?status=APPROVED&limit=1000")).json()
    assert order["id"] in {o["id"] for o in approved}
    assert all(o["status"] == "APPROVED" for o in approved)
    sagas = (await api.get("orchestrator", "/sagas?status=COMPLETED&limit=1000")).json()
    assert order["id"] in {s["id"] for s in sagas}
    missing = await api.get("order", f"/orders/{uuid.UUID(int=0)}")
    assert missing.status_code == 404


async def test_invariants_hold_after_the_flows(stack: Stack) -> None:
    report = verify(stack.urls)
    assert report.ok, report.violations
    assert report.checked["orders"] >= 5


def test_verify_command_names_a_broken_invariant(stack: Stack) -> None:
    account = f"c-{uuid.uuid4().hex[:12]}"
    created = httpx.post(
        f"{stack.service_url('payment')}/accounts", json={"id": account, "balance": "3.00"}
    )
    assert created.status_code == 201
    runner = CliRunner()
    where = ["--state-dir", str(stack.state_dir)]
    if stack.server_url:  # the stack's databases on the session's server, under its prefix
        where += ["--database-url", stack.server_url]
        where += ["--database-prefix", stack.config.database_prefix]
    result = runner.invoke(app, ["verify", *where])
    assert result.exit_code == 0, result.output

    engine = create_engine(sync_url(stack.urls["payment"]))

    def shift_balance(cents: int) -> None:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE account SET balance_cents = balance_cents + :cents WHERE id = :id"),
                {"cents": cents, "id": account},
            )

    shift_balance(-1)  # money vanishes outside any saga
    try:
        result = runner.invoke(app, ["verify", *where])
        assert result.exit_code == 1
        assert "balance = initial - approved charges" in result.output
        assert account in result.output
    finally:
        shift_balance(+1)
        engine.dispose()
