"""`sagaline bench`: throughput, latency, CPU and memory at several loads, on one running stack."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from sagaline.demo import DemoOptions, run_demo, sparkline
from sagaline.stack import Stack


def run_bench(
    stack: Stack, orders: int, concurrencies: list[int], console: Console, *, show: bool
) -> dict[str, Any]:
    rows = []
    for concurrency in concurrencies:
        before = stack.usage()
        summary = run_demo(stack, DemoOptions(orders, concurrency), console, show=show)
        after = summary["processes"]
        cpu = sum(after[name]["cpu_s"] - before.get(name, {}).get("cpu_s", 0) for name in after)
        decided = summary["approved"] + summary["rejected"]
        rows.append(
            {
                "concurrency": concurrency,
                "orders": orders,
                "pending": summary["pending"],
                "sagas_per_s": summary["sagas_per_s"],
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "cpu_ms_per_saga": round(cpu * 1000 / max(decided, 1), 2),
                "peak_rss_mb": {name: usage["peak_rss_mb"] for name, usage in after.items()},
                "latency_timeline_ms": summary["latency_timeline_ms"],
                "invariants_ok": summary["invariants_ok"],
            }
        )
    return {"runs": rows, "invariants_ok": all(row["invariants_ok"] for row in rows)}


def render_bench(result: dict[str, Any], console: Console, title: str) -> None:
    table = Table(title=title, header_style="bold")
    for column in (
        "in flight",
        "sagas/s",
        "p50 ms",
        "p99 ms",
        "CPU ms/saga",
        "pending",
        "p99 over the run",
    ):
        table.add_column(column, justify="right")
    for row in result["runs"]:
        table.add_row(
            str(row["concurrency"]),
            f"{row['sagas_per_s']:.1f}",
            f"{row['p50_ms']:.0f}",
            f"{row['p99_ms']:.0f}",
            f"{row['cpu_ms_per_saga']:.1f}",
            str(row["pending"]),
            sparkline(row["latency_timeline_ms"]),
        )
    console.print(table)
    peaks = result["runs"][-1]["peak_rss_mb"] if result["runs"] else {}
    console.print(
        "peak memory (MB): " + ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(peaks.items()))
    )
    verdict = "[green]all hold[/green]" if result["invariants_ok"] else "[red]VIOLATED[/red]"
    console.print(f"invariants after every run: {verdict}")
