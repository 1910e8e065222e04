"""One saga, one trace: on a running stack whose eight processes export OTLP to a receiver the
test runs, an order's spans form one tree from its HTTP request through every service and relay,
continued across Kafka by the `traceparent` each relay publishes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sagaline.otlp import ReceivedSpan, SpanReceiver
from sagaline.trace_tree import by_trace, roots
from services.registry import SERVICES
from tests.integration.conftest import server_for
from tests.integration.support import Api, Parts, eventually, running_stack

PROCESSES = {*SERVICES, *(f"{service}-relay" for service in SERVICES)}
TRACED_PARTS = [Parts("embedded", "sqlite"), Parts("kafka", "postgresql")]


@pytest.fixture(scope="module")
def receiver() -> Iterator[SpanReceiver]:
    with SpanReceiver() as running:
        yield running


def traced(receiver: SpanReceiver, trace_id: str) -> list[ReceivedSpan]:
    return by_trace(receiver.spans()).get(trace_id, [])


def saga_ended(spans: list[ReceivedSpan]) -> bool:
    """The order-service has processed the saga's outcome (the last hop, after any refund), every
    process has exported, and no span waits for its parent (a parent ends, and is exported,
    after its children)."""
    ended = any(span.name == "process orchestrator.response" for span in spans)
    return ended and {span.service for span in spans} >= PROCESSES and len(roots(spans)) == 1


async def place_traced_order(api: Api, trace_id: str, parent_id: str, *, in_stock: int) -> str:
    customer = await api.account("100.00")
    product = await api.product(in_stock)
    response = await api.client.post(
        api.url("order", "/orders"),
        json={
            "customer_id": customer,
            "items": [{"product_id": product, "quantity": 2, "unit_price": "10.00"}],
        },
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "Prefer": "wait=20"},
    )
    assert response.status_code == 201, response.text
    status: str = response.json()["status"]
    return status


# Two in stock: approved. One: the charge is made, the reservation refused, the charge refunded.
OUTCOMES = {2: "APPROVED", 1: "REJECTED"}


@pytest.mark.parametrize("parts", TRACED_PARTS, ids=str)
def test_one_saga_is_one_tree_across_the_processes(
    parts: Parts, receiver: SpanReceiver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    callers = {in_stock: (secrets.token_hex(16), secrets.token_hex(8)) for in_stock in OUTCOMES}
    server_url = server_for(request, parts)
    with running_stack(
        tmp_path, parts, server_url=server_url, extra_env=receiver.exporter_env()
    ) as stack:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                api = Api(stack, client)
                decided = await asyncio.gather(
                    *(
                        place_traced_order(api, trace_id, parent_id, in_stock=in_stock)
                        for in_stock, (trace_id, parent_id) in callers.items()
                    )
                )
                assert decided == list(OUTCOMES.values())

            async def complete() -> bool:
                return all(saga_ended(traced(receiver, t)) for t, _ in callers.values())

            with contextlib.suppress(AssertionError):  # what is missing is said below
                await eventually(complete, within=30, what="the sagas' spans")

        asyncio.run(scenario())

    for in_stock, (trace_id, parent_id) in callers.items():
        check_one_tree(traced(receiver, trace_id), parent_id, OUTCOMES[in_stock])


def check_one_tree(spans: list[ReceivedSpan], parent_id: str, status: str) -> None:
    """A single root (the order-service's request, child of the caller's span); every other
    span's parent is in the trace; every process and each hop of the saga is in it."""
    assert {span.service for span in spans} >= PROCESSES, (
        f"{status}: missing {PROCESSES - {s.service for s in spans}}"
    )
    assert len(roots(spans)) == 1, [(r.service, r.name, r.parent_id) for r in roots(spans)]
    (root,) = roots(spans)
    assert (root.service, root.kind, root.parent_id) == ("order", "server", parent_id)
    assert root.name == "POST /orders"
    names = {(span.service, span.name) for span in spans}
    for service in SERVICES:  # each relay publishes in the trace
        assert any(s == f"{service}-relay" and n.endswith(" send") for s, n in names), service
    for hop in (
        ("orchestrator", "process orchestrator"),
        ("payment", "process payment"),
        ("orchestrator", "process payment.success"),
        ("stock", "process stock"),
        # the reservation's reply: done on .success, refused on .dlt (DESIGN.md's topics)
        ("orchestrator", "process stock.success" if status == "APPROVED" else "process stock.dlt"),
        ("order", "process orchestrator.response"),
    ):
        assert hop in names, (status, hop)
    assert any(name == "transaction" for _, name in names)
    assert any(span.kind == "client" and span.service == "payment" for span in spans), (
        "the payment-service's SQL statements"
    )
    compensated = ("payment", "process payment.compensation") in names
    assert compensated == (status == "REJECTED"), f"{status}: the refund is in its saga's trace"
