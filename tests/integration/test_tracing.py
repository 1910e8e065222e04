"""One saga, one trace: on a running stack whose eight processes export OTLP to a receiver the
test runs, an order's spans form one tree from its HTTP request through every service and relay,
continued across Kafka by the `traceparent` each relay publishes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagaline.lab.stack import Stack
from sagaline.services.registry import SERVICES
from sagaline.traces.otlp_receiver import ReceivedSpan, SpanReceiver
from sagaline.traces.span_tree import by_trace, roots
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
                # One after the other: orders in flight together may share a consumer's batch,
                # whose transaction (and its statements) joins the first message's trace only.
                decided = [
                    await place_traced_order(api, trace_id, parent_id, in_stock=in_stock)
                    for in_stock, (trace_id, parent_id) in callers.items()
                ]
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
        # the reservation's reply: done on .success, refused on .dlt (docs/design.md, "Topics")
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


async def resends(api: Api, service: str) -> float:
    """The service's re-sends so far (sagaline_resends_total, all types)."""
    response = await api.get(service, "/metrics/")
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "sagaline_resends"
        for sample in family.samples
        if sample.name == "sagaline_resends_total"
    )


@contextlib.contextmanager
def paused(stack: Stack, process: str) -> Iterator[None]:
    stack.processes[process].signal(signal.SIGSTOP)
    try:
        yield
    finally:
        stack.processes[process].signal(signal.SIGCONT)


@pytest.mark.parametrize(
    ("frozen", "resender", "span", "resent"),
    [
        # the charge unanswered: the orchestrator's timer re-sends it in the saga's trace
        ("payment", "orchestrator", "saga timeout", ("orchestrator-relay", "payment send")),
        # the start unanswered: the order-service's timer re-sends it in the order's trace
        ("orchestrator", "order", "order re-send", ("order-relay", "orchestrator send")),
    ],
)
def test_what_a_timer_re_sends_stays_in_the_sagas_trace(
    frozen: str,
    resender: str,
    span: str,
    resent: tuple[str, str],
    receiver: SpanReceiver,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    parts = Parts("embedded", "postgresql")  # SIGSTOP never holds SQLite's one write lock here
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with running_stack(
        tmp_path,
        parts,
        server_url=server_for(request, parts),
        extra_env=receiver.exporter_env(),
        step_timeout_s=1.0,  # the start's timeout is then 3 s
        max_attempts=5,
    ) as stack:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                api = Api(stack, client)
                customer, product = await api.account("100.00"), await api.product(2)
                before = await resends(api, resender)
                with paused(stack, frozen):
                    response = await client.post(
                        api.url("order", "/orders"),
                        json={
                            "customer_id": customer,
                            "items": [{"product_id": product, "quantity": 1, "unit_price": "1"}],
                        },
                        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
                    )
                    assert response.status_code == 201, response.text

                    async def resent_once() -> bool:
                        return await resends(api, resender) > before

                    await eventually(resent_once, within=30, what=f"a re-send by {resender}")
                decided = await api.decided(response.json()["id"])
                assert decided["status"] == "APPROVED"

            async def complete() -> bool:
                spans = traced(receiver, trace_id)
                return saga_ended(spans) and any(s.name == span for s in spans)

            with contextlib.suppress(AssertionError):  # what is missing is said below
                await eventually(complete, within=30, what="the saga's spans")

        asyncio.run(scenario())

    spans = traced(receiver, trace_id)
    assert len(roots(spans)) == 1, [(r.service, r.name, r.parent_id) for r in roots(spans)]
    timers = [s for s in spans if (s.service, s.name) == (resender, span)]
    assert timers, f"no {span!r} span from {resender} in the trace"
    below = {(s.service, s.name) for s in spans if s.parent_id in {t.span_id for t in timers}}
    assert resent in below, f"the re-sent message is not published under {span!r}: {below}"
