"""Races and timeouts, made to happen by pausing a service (SIGSTOP) rather than by luck."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import httpx
import pytest

from sagaline.domain.definition import Execution
from sagaline.lab.stack import Stack
from sagaline.lab.verify import verify
from tests.integration.conftest import server_for
from tests.integration.support import STACK_PARTS, Api, Kafka, Parts, of_saga, running_stack


@contextlib.contextmanager
def paused(stack: Stack, service: str) -> Iterator[None]:
    """The service's process is frozen (SIGSTOP) inside the block, and thawed after it."""
    process = stack.processes[service]
    process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.signal(signal.SIGCONT)


@pytest.fixture(scope="module", params=STACK_PARTS, ids=str)
def parallel_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    parts: Parts = request.param
    with running_stack(
        tmp_path_factory.mktemp("parallel"),
        parts,
        server_url=server_for(request, parts),
        execution=Execution.PARALLEL.value,
    ) as running:
        yield running


@pytest.fixture(scope="module", params=STACK_PARTS, ids=str)
def impatient_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Sequential, a one-second step timeout and three attempts."""
    parts: Parts = request.param
    with running_stack(
        tmp_path_factory.mktemp("impatient"),
        parts,
        server_url=server_for(request, parts),
        step_timeout_s=1.0,
        max_attempts=3,
    ) as running:
        yield running


async def test_parallel_order_is_approved(parallel_stack: Stack, client: httpx.AsyncClient) -> None:
    api = Api(parallel_stack, client)
    customer = await api.account("30.00")
    product = await api.product(3)

    order = await api.order(customer, (product, 3, "10.00"))

    assert (await api.decided(order["id"]))["status"] == "APPROVED"
    assert await api.balance(customer) == "0.00"
    assert await api.stock(product) == 0
    saga = await api.saga(order["id"])
    sent = [e["type"] for e in saga["history"] if e["direction"] == "sent"]
    assert sorted(sent[:2]) == ["payment.charge", "stock.reserve"]  # both at once


async def test_stock_fails_before_payment_succeeds(
    parallel_stack: Stack, client: httpx.AsyncClient
) -> None:
    """Parallel mode: the stock step fails while the charge is still unanswered; then the charge
    succeeds. The payment must still be compensated (refunded), exactly once.

    The order of events is forced: payment and stock are frozen until both commands are on the
    broker; the orchestrator's relay is then frozen, so that no compensation can reach payment
    before its charge; stock is thawed and fails; payment is thawed and charges; last, the
    orchestrator's relay is thawed and the compensation goes out.

    Not on SQLite: a relay stopped by SIGSTOP may hold the database's only write lock (it marks
    rows published), and the orchestrator could then never record the stock failure."""
    if parallel_stack.server_url is None:
        pytest.skip("SIGSTOP of a relay can freeze SQLite's single writer; forced on PostgreSQL")
    api = Api(parallel_stack, client)
    customer = await api.account("40.00")

    async with Kafka(parallel_stack.bootstrap_servers) as kafka:
        with paused(parallel_stack, "payment"):
            with paused(parallel_stack, "stock"):
                order = await api.order(customer, ("no-such-product", 1, "25.00"))
                await kafka.read("payment", of_saga(order["id"], "payment.charge"))
                await kafka.read("stock", of_saga(order["id"], "stock.reserve"))
                parallel_stack.processes["orchestrator-relay"].signal(signal.SIGSTOP)
            try:
                saga = await api.saga_status(order["id"], "COMPENSATING")
                assert saga["steps"]["stock"]["status"] == "FAILED", "stock failed first"
                assert saga["steps"]["payment"]["status"] == "COMPENSATING"
            except BaseException:
                parallel_stack.processes["orchestrator-relay"].signal(signal.SIGCONT)
                raise
        try:  # payment is thawed: only its charge is there to read
            await kafka.read("payment.success", of_saga(order["id"], "payment.charged"))
            charge = await api.get("payment", f"/charges/{order['id']}")
            assert charge.json()["status"] != "REFUNDED", "the charge succeeded, unrefunded yet"
        finally:
            parallel_stack.processes["orchestrator-relay"].signal(signal.SIGCONT)

    decided = await api.decided(order["id"])
    assert decided["status"] == "REJECTED"
    saga = await api.saga_status(order["id"], "COMPENSATED")
    received = [e["type"] for e in saga["history"] if e["direction"] == "received"]
    assert received.count("payment.compensated") == 1
    assert await api.balance(customer) == "40.00"
    charge = await api.get("payment", f"/charges/{order['id']}")
    assert charge.json()["status"] == "REFUNDED", "the charge took effect and was refunded"
    report = verify(parallel_stack.urls)
    assert report.ok, report.violations


async def test_timed_out_step_is_resent_then_compensated(
    impatient_stack: Stack, client: httpx.AsyncClient
) -> None:
    api = Api(impatient_stack, client)
    customer = await api.account("60.00")
    product = await api.product(5)

    with paused(impatient_stack, "stock"):
        order = await api.order(customer, (product, 2, "10.00"))
        saga = await api.saga_status(order["id"], "COMPENSATING", within=30)
        commands = [(e["type"], e["attempt"]) for e in saga["history"] if e["direction"] == "sent"]
        assert ("stock.reserve", 1) in commands
        assert ("stock.reserve", 2) in commands  # re-sent after the first timeout
        assert "timed out" in saga["reason"]
        # The timed-out step may have taken effect: it is compensated too.
        assert saga["steps"]["stock"]["status"] == "COMPENSATING"
        assert saga["steps"]["payment"]["status"] in ("COMPENSATING", "COMPENSATED")

    decided = await api.decided(order["id"])
    assert decided["status"] == "REJECTED"
    assert "timed out" in decided["reason"]
    await api.saga_status(order["id"], "COMPENSATED", within=30)
    assert await api.balance(customer) == "60.00"
    assert await api.stock(product) == 5
    report = verify(impatient_stack.urls)
    assert report.ok, report.violations
