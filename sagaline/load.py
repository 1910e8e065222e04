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

from sagaline.scenario import Scenario

Tick = Callable[[int, int], None]  # (placed, decided)


@dataclass
class Outcome:
    order_ids: dict[str, str]  # order id -> expected outcome
    orders: list[dict[str, Any]]  # the final state of this run's orders
    wall_s: float


class LoadError(RuntimeError):
    pass


async def _post(client: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client.post(url, json=body) as response:
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


async def _decided(client: aiohttp.ClientSession, order_url: str) -> int:
    summary = await _get(client, f"{order_url}/orders/summary")
    return int(summary["APPROVED"]) + int(summary["REJECTED"])


async def run_orders(
    urls: dict[str, str],
    scenario: Scenario,
    *,
    concurrency: int,
    deadline_s: float,
    tick: Tick = lambda placed, decided: None,
    headers: dict[str, str] | None = None,
) -> Outcome:
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as client:
        await seed(client, urls, scenario)
        order_url = urls["order"]
        baseline = await _decided(client, order_url)
        queue: asyncio.Queue[tuple[dict[str, Any], str]] = asyncio.Queue()
        for planned in scenario.orders:
            queue.put_nowait((planned.body, planned.expect))
        expected: dict[str, str] = {}
        started = time.perf_counter()

        async def worker() -> None:
            while not queue.empty():
                body, expect = queue.get_nowait()
                order = await _post(client, f"{order_url}/orders", body)
                expected[order["id"]] = expect

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        total = len(scenario.orders)
        decided = 0
        try:
            while decided < total:
                done = all(w.done() for w in workers)
                for w in workers:
                    if w.done() and w.exception():
                        raise LoadError(str(w.exception()))
                decided = await _decided(client, order_url) - baseline
                tick(len(expected), decided)
                if time.perf_counter() - started > deadline_s:
                    break
                if not (done and decided >= total):
                    await asyncio.sleep(0.2)
        finally:
            for w in workers:
                w.cancel()
        wall = time.perf_counter() - started
        orders = await fetch_orders(client, order_url, set(expected))
        return Outcome(expected, orders, wall)


async def fetch_orders(
    client: aiohttp.ClientSession, order_url: str, ids: set[str]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await _get(client, f"{order_url}/orders", limit=1000, offset=offset)
        found += [o for o in page if o["id"] in ids]
        if len(page) < 1000:
            return found
        offset += 1000


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
