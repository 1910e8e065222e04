"""A Saga with a third step declared outside sagaline: `sagaline up`'s stack starts every service
its Saga file lists (here `shipping`, found through SAGALINE_STEPS), on its own port and database,
and the saga runs through it: completed with its outcome recorded, or compensated when it refuses.
On the embedded broker and SQLite only: what is checked does not depend on the parts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from sagaline.lab.stack import Stack, StackConfig, StackError
from sagaline.registration import STEPS_VARIABLE
from sagaline.services.registry import PORTS
from sagaline.storage.db import sync_url
from tests.integration.support import EMBEDDED_SQLITE, Api, http_client, running_stack
from tests.unit.shipping_step import NO_ADDRESS_PREFIX

ROOT = Path(__file__).resolve().parents[2]
ORDER_YAML = ROOT / "k8s" / "sagas" / "order.yaml"
SHIPPING = "tests.unit.shipping_step:SHIPPING"


def saga_with_steps(directory: Path, *steps: str) -> Path:
    """A copy of the order saga with these steps after payment and stock, re-sent briefly (a
    step that never answers is given up within seconds, not minutes)."""
    document = yaml.safe_load(ORDER_YAML.read_text())
    document["spec"].update(stepTimeoutSeconds=2, maxAttempts=2, compensationMaxAttempts=3)
    document["spec"]["steps"] += [{"name": step} for step in steps]
    path = directory / "order-shipping.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("third_step")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STEPS_VARIABLE, SHIPPING)  # the stack's environment: its processes get it
        patch.setenv("PYTHONPATH", str(ROOT))  # where tests.unit.shipping_step is importable
        with running_stack(
            state_dir, EMBEDDED_SQLITE, saga_file=saga_with_steps(state_dir, "shipping")
        ) as running:
            yield running


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with http_client() as client:
        yield Api(stack, client)


def received(saga: dict) -> list[str]:
    return [event["type"] for event in saga["history"] if event["direction"] == "received"]


def sent(saga: dict) -> list[str]:
    return [event["type"] for event in saga["history"] if event["direction"] == "sent"]


def shipment(stack: Stack, saga_id: str) -> tuple[str, bool] | None:
    engine = create_engine(sync_url(stack.urls["shipping"]))
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT address, cancelled FROM test_shipment WHERE saga_id = :id"),
                {"id": uuid.UUID(saga_id).hex},
            ).first()
    finally:
        engine.dispose()
    return None if row is None else (str(row[0]), bool(row[1]))


def test_the_stack_runs_the_third_step_on_its_own_port_and_database(stack: Stack) -> None:
    assert "shipping" in stack.processes and "shipping-relay" in stack.processes
    assert stack.config.ports["shipping"] not in {stack.config.ports[s] for s in PORTS}
    assert stack.urls["shipping"].endswith("/shippingdb.db")
    response = httpx.get(f"{stack.service_url('shipping')}/shipping/ping", timeout=10)
    assert response.json() == {"shipping": "ok"}


async def test_a_saga_through_the_third_step_completes_with_its_outcome(
    api: Api, stack: Stack
) -> None:
    customer = await api.account("100.00")
    product = await api.product(10)

    order = await api.order(customer, (product, 2, "10.00"))
    decided = await api.decided(order["id"], within=60)

    assert decided["status"] == "APPROVED", decided
    saga = await api.saga(order["id"])
    assert saga["status"] == "COMPLETED"
    assert sent(saga) == ["payment.charge", "stock.reserve", "shipping.execute", "saga.completed"]
    assert received(saga) == [
        "saga.start",
        "payment.charged",
        "stock.reserved",
        "shipping.executed",
    ]
    assert shipment(stack, order["id"]) == (f"on file for {customer}", False)
    assert await api.balance(customer) == "80.00"
    assert await api.stock(product) == 8


async def test_a_refusing_third_step_compensates_payment_and_stock(api: Api, stack: Stack) -> None:
    customer = f"{NO_ADDRESS_PREFIX}{uuid.uuid4().hex[:12]}"
    response = await api.client.post(
        api.url("payment", "/accounts"), json={"id": customer, "balance": "100.00"}
    )
    assert response.status_code == 201, response.text
    product = await api.product(10)

    order = await api.order(customer, (product, 3, "5.00"))
    decided = await api.decided(order["id"], within=60)

    assert decided["status"] == "REJECTED", decided
    assert "no address to ship to" in decided["reason"]
    saga = await api.saga(order["id"])
    assert saga["status"] == "COMPENSATED"
    assert "shipping.failed" in received(saga)
    assert {"payment.compensate", "stock.compensate"} <= set(sent(saga))
    assert {"payment.compensated", "stock.compensated"} <= set(received(saga))
    assert shipment(stack, order["id"]) is None
    assert await api.balance(customer) == "100.00"
    assert await api.stock(product) == 10


def test_a_step_no_declaration_names_is_refused_at_start(tmp_path: Path) -> None:
    config = StackConfig(state_dir=tmp_path, saga_file=saga_with_steps(tmp_path, "carrier"))
    with pytest.raises(StackError, match=r"unknown service 'carrier' \(known: .*register it"):
        Stack(config).start(ready_timeout_s=10)
