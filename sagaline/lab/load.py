"""Driving the running stack over HTTP: seed, place orders, wait until every order has ended.

The load generator shares the machine with the system it measures, so it uses aiohttp, the
lighter of the async HTTP clients, to leave the CPU to the services.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from sagaline.lab.scenario import Scenario

Tick = Callable[[int, int], None]  # (placed, decided)
LONG_POLL_S = 10.0


@dataclass
class PlacedOrders:
    """The orders one run placed: what each was expected to end as, how each ended, how long."""

    order_ids: dict[str, str]  # order id -> expected outcome
    orders: list[dict[str, Any]]  # the final state of this run's orders
    wall_s: float


class LoadError(RuntimeError):
    pass


def bearer(token: str | None) -> dict[str, str] | None:
    """The Authorization header that mutating requests need when the stack has an API token."""
    return {"Authorization": f"Bearer {token}"} if token else None


async def _post(
    client: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    async with client.post(url, json=body, headers=headers) as response:
        if response.status not in (200, 201):
            text = await response.text()
            raise LoadError(f"POST {url} answered {response.status}: {text[:300]}")
        result: dict[str, Any] = await response.json()
        return result


async def _get(client: aiohttp.ClientSession, url: str, **params: Any) -> Any:
    async with client.get(url, params=params) as response:
        response.raise_for_status()
        return await response.json()


async def seed(client: aiohttp.ClientSession, urls: dict[str, str], scenario: Scenario) -> None:
    await asyncio.gather(
        *(_post(client, f"{urls['payment']}/accounts", a) for a in scenario.accounts),
        *(_post(client, f"{urls['stock']}/products", p) for p in scenario.products),
    )


async def run_orders(
    urls: dict[str, str],
    scenario: Scenario,
    *,
    concurrency: int,
    deadline_s: float,
    tick: Tick = lambda placed, decided: None,
    headers: dict[str, str] | None = None,
) -> PlacedOrders:
    """Keep `concurrency` orders in flight: each worker places an order asking to hear its
    decision in the same answer (`Prefer: wait`), long-polls with GET if it is still pending,
    then places the next; what is still pending at the deadline is read as it stands."""
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    timeout = aiohttp.ClientTimeout(total=LONG_POLL_S + 30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as client:
        await seed(client, urls, scenario)
        order_url = f"{urls['order']}/orders"
        queue: asyncio.Queue[tuple[dict[str, Any], str]] = asyncio.Queue()
        for planned in scenario.orders:
            queue.put_nowait((planned.body, planned.expect))
        expected: dict[str, str] = {}
        final: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        deadline = started + deadline_s

        async def worker() -> None:
            while not queue.empty() and time.perf_counter() < deadline:
                body, expect = queue.get_nowait()
                wait = min(LONG_POLL_S, max(0.0, deadline - time.perf_counter()))
                prefer = {"Prefer": f"wait={wait:.3f}"}
                order = await _post(client, order_url, body, prefer)
                expected[order["id"]] = expect
                while order["status"] == "PENDING" and time.perf_counter() < deadline:
                    wait = min(LONG_POLL_S, max(0.0, deadline - time.perf_counter()))
                    order = await _get(client, f"{order_url}/{order['id']}", wait=round(wait, 3))
                final[order["id"]] = order

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            while not all(w.done() for w in workers):
                tick(len(expected), sum(1 for o in final.values() if o["status"] != "PENDING"))
                await asyncio.wait(workers, timeout=0.2)
            for w in workers:
                if w.exception():
                    raise LoadError(str(w.exception()))
        finally:
            for w in workers:
                w.cancel()
        wall = time.perf_counter() - started
        tick(len(expected), sum(1 for o in final.values() if o["status"] != "PENDING"))
        for order_id in set(expected) - set(final):
            final[order_id] = await _get(client, f"{order_url}/{order_id}")
        return PlacedOrders(expected, list(final.values()), wall)


def latencies_ms(orders: list[dict[str, Any]]) -> list[float]:
    result = []
    for order in orders:
        if order.get("decided_at"):
            created = datetime.fromisoformat(order["created_at"])
            decided = datetime.fromisoformat(order["decided_at"])
            result.append((decided - created).total_seconds() * 1000)
    return sorted(result)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def throughput(orders: list[dict[str, Any]]) -> float:
    decided = [o for o in orders if o.get("decided_at")]
    if not decided:
        return 0.0
    first = min(datetime.fromisoformat(o["created_at"]) for o in decided)
    last = max(datetime.fromisoformat(o["decided_at"]) for o in decided)
    span = (last - first).total_seconds()
    return len(decided) / span if span > 0 else float(len(decided))
