"""`sagaline demo`: the whole stack, a few hundred orders, a summary and the invariant check."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from sagaline.lab.load import bearer, latencies_ms, percentile, run_orders, throughput
from sagaline.lab.progress import counting_progress
from sagaline.lab.scenario import APPROVED, classify, plan
from sagaline.lab.stack import Stack
from sagaline.lab.verify import verify
from sagaline.services.registry import SERVICES


@dataclass(frozen=True)
class DemoOptions:
    orders: int = 300
    concurrency: int = 16
    seed: int = 1
    deadline_s: float | None = None


def run_demo(stack: Stack, options: DemoOptions, console: Console, *, show: bool) -> dict[str, Any]:
    """Place the scenario's orders on a started stack and measure; returns the JSON summary."""
    run_id = uuid.uuid4().hex[:8]
    scenario = plan(options.orders, seed=options.seed, run_id=run_id)
    urls = {service: stack.service_url(service) for service in SERVICES}
    deadline = options.deadline_s or max(60.0, options.orders / 20)
    progress = counting_progress(console, show=show, label_width=16)
    with progress:
        placed_bar = progress.add_task("orders placed", total=options.orders)
        decided_bar = progress.add_task("orders decided", total=options.orders)

        def tick(placed: int, decided: int) -> None:
            progress.update(placed_bar, completed=placed)
            progress.update(decided_bar, completed=decided)

        placed = asyncio.run(
            run_orders(
                urls,
                scenario,
                concurrency=options.concurrency,
                deadline_s=deadline,
                tick=tick,
                headers=bearer(stack.config.api_token),
            )
        )
    usage = stack.usage()
    report = verify(stack.urls)
    orders = placed.orders
    kinds = Counter(classify(o["status"], o["reason"]) for o in orders)
    unexpected = [
        o["id"] for o in orders if classify(o["status"], o["reason"]) != placed.order_ids[o["id"]]
    ]
    latencies = latencies_ms(orders)
    return {
        "orders": options.orders,
        "approved": kinds.get(APPROVED, 0),
        "rejected": sum(1 for o in orders if o["status"] == "REJECTED"),
        "pending": sum(1 for o in orders if o["status"] == "PENDING")
        + options.orders
        - len(orders),
        "rejected_by_reason": {k: v for k, v in kinds.items() if k != APPROVED and k != "pending"},
        "expected": dict(Counter(placed.order_ids.values())),
        "unexpected_outcomes": len(unexpected),
        "sagas_per_s": round(throughput(orders), 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else 0.0,
        "wall_s": round(placed.wall_s, 2),
        "concurrency": options.concurrency,
        "invariants_ok": report.ok,
        "invariants": report.as_dict(),
        "latency_timeline_ms": _timeline(orders),
        "processes": usage,
    }


def _timeline(orders: list[dict[str, Any]], buckets: int = 40) -> list[float]:
    """p99 latency per slice of the run, in order of creation: latency over time."""
    ordered = sorted((o for o in orders if o.get("decided_at")), key=lambda o: str(o["created_at"]))
    if not ordered:
        return []
    size = max(1, len(ordered) // buckets)
    return [
        round(percentile(latencies_ms(ordered[i : i + size]), 0.99), 1)
        for i in range(0, len(ordered), size)
    ]


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


def render(summary: dict[str, Any], console: Console, title: str) -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_column("expected", justify="right")
    expected = summary["expected"]
    table.add_row("orders", str(summary["orders"]), "")
    table.add_row("approved", str(summary["approved"]), str(expected.get(APPROVED, 0)))
    for reason, count in sorted(summary["rejected_by_reason"].items()):
        table.add_row(f"  rejected: {reason}", str(count), str(expected.get(reason, 0)))
    table.add_row("rejected (all)", str(summary["rejected"]), "")
    table.add_row("pending", str(summary["pending"]), "0")
    table.add_row("unexpected outcomes", str(summary["unexpected_outcomes"]), "0")
    table.add_row("sagas/s", f"{summary['sagas_per_s']:.1f}", "")
    table.add_row("p50 latency", f"{summary['p50_ms']:.0f} ms", "")
    table.add_row("p99 latency", f"{summary['p99_ms']:.0f} ms", "")
    table.add_row("max latency", f"{summary['max_ms']:.0f} ms", "")
    console.print(table)
    timeline = summary.get("latency_timeline_ms") or []
    if timeline:
        console.print(
            f"p99 latency over the run  {sparkline(timeline)}  (peak {max(timeline):.0f} ms)"
        )
    invariants = summary["invariants"]
    if invariants["ok"]:
        console.print("[green]invariants: all hold[/green]", invariants["checked"])
    else:
        console.print("[red]invariants violated:[/red]")
        for name, violation in invariants["violations"].items():
            console.print(f"  [red]{name}[/red]: {violation['count']}, e.g. {violation['sample']}")
