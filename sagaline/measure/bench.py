"""`sagaline bench`: throughput, latency, CPU and memory at several loads, on one running stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sagaline.lab.demo import DemoOptions, run_demo, sparkline
from sagaline.lab.managed import cpu_s
from sagaline.lab.stack import Stack
from sagaline.measure.profiling import profiled


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds of processes, including their children already exited and reaped
    (cutime, cstime): a PostgreSQL backend that ends mid-run still counts, in the postmaster."""
    return sum(cpu_s(pid, reaped_children=True) or 0.0 for pid in pids)


def postgres_cpu_s(stack: Stack) -> float | None:
    """CPU of the embedded PostgreSQL (postmaster and backends) so far; None if not started here."""
    return tree_cpu_s(stack.postgres.pids()) if stack.postgres is not None else None


def cpu_ms_per_saga_by_process(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], decided: int
) -> dict[str, float]:
    return {
        name: round(
            (after[name]["cpu_s"] - before.get(name, {}).get("cpu_s", 0)) * 1000 / max(decided, 1),
            2,
        )
        for name in sorted(after)
        if "cpu_s" in after[name]
    }


def _pids(stack: Stack) -> dict[str, int]:
    """The Python processes of the stack (services and relays), for profiling."""
    return {
        name: process.process.pid
        for name, process in stack.processes.items()
        if process.alive() and process.process is not None
    }


P99_BOUND_MS = 500.0  # the latency a saga's caller is promised in the throughput figure


def best_within(rows: list[dict[str, Any]], p99_bound_ms: float) -> dict[str, Any] | None:
    """The run with the most sagas/s whose p99 stayed under the bound and left nothing pending."""
    fitting = [row for row in rows if row["p99_ms"] < p99_bound_ms and row["pending"] == 0]
    if not fitting:
        return None
    row = max(fitting, key=lambda row: row["sagas_per_s"])
    return {
        "p99_bound_ms": p99_bound_ms,
        "concurrency": row["concurrency"],
        "sagas_per_s": row["sagas_per_s"],
        "p99_ms": row["p99_ms"],
    }


def warm_up(
    stack: Stack, orders: int, concurrency: int, console: Console, *, show: bool
) -> dict[str, Any]:
    """Orders placed before the measured runs and left out of them: a fresh stack's first
    sagas pay for cold caches, connection pools and, on Apache Kafka, the JIT."""
    if orders == 0:
        return {"orders": 0, "invariants_ok": True}
    summary = run_demo(stack, DemoOptions(orders, concurrency), console, show=show)
    return {
        "orders": orders,
        "concurrency": concurrency,
        "pending": summary["pending"],
        "invariants_ok": summary["invariants_ok"],
    }


def run_bench(
    stack: Stack,
    orders: int,
    concurrencies: list[int],
    console: Console,
    *,
    show: bool,
    profile: Path | None = None,
    warmup: int = 0,
) -> dict[str, Any]:
    warmed = warm_up(stack, warmup, max(concurrencies), console, show=show)
    rows = []
    for concurrency in concurrencies:
        before = stack.usage()
        postgres_before = postgres_cpu_s(stack)
        with profiled(profile, _pids(stack), f"c{concurrency}", console):
            summary = run_demo(stack, DemoOptions(orders, concurrency), console, show=show)
        postgres_after = postgres_cpu_s(stack)
        after = summary["processes"]
        cpu = sum(after[name]["cpu_s"] - before.get(name, {}).get("cpu_s", 0) for name in after)
        decided = summary["approved"] + summary["rejected"]
        by_process = cpu_ms_per_saga_by_process(before, after, decided)
        if postgres_before is not None and postgres_after is not None:
            postgres_ms = (postgres_after - postgres_before) * 1000 / max(decided, 1)
            by_process["postgres"] = round(postgres_ms, 2)
        rows.append(
            {
                "concurrency": concurrency,
                "orders": orders,
                "pending": summary["pending"],
                "sagas_per_s": summary["sagas_per_s"],
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "cpu_ms_per_saga": round(cpu * 1000 / max(decided, 1), 2),
                "cpu_ms_per_saga_by_process": by_process,
                "peak_rss_mb": {name: usage["peak_rss_mb"] for name, usage in after.items()},
                "latency_timeline_ms": summary["latency_timeline_ms"],
                "invariants_ok": summary["invariants_ok"],
            }
        )
    return {
        "runs": rows,
        "warmup": warmed,
        "best": best_within(rows, P99_BOUND_MS),
        "invariants_ok": warmed["invariants_ok"] and all(row["invariants_ok"] for row in rows),
    }


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
    for row in result["runs"]:
        parts = row.get("cpu_ms_per_saga_by_process", {})
        console.print(
            f"CPU ms/saga at {row['concurrency']} in flight: "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in parts.items())
        )
    peaks = result["runs"][-1]["peak_rss_mb"] if result["runs"] else {}
    console.print(
        "peak memory (MB): " + ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(peaks.items()))
    )
    best = result.get("best")
    bound = f"p99 < {P99_BOUND_MS:.0f} ms"
    console.print(
        f"most sagas/s with {bound}: {best['sagas_per_s']:.1f} at {best['concurrency']} in flight"
        if best
        else f"no run kept {bound}"
    )
    verdict = "[green]all hold[/green]" if result["invariants_ok"] else "[red]VIOLATED[/red]"
    console.print(f"invariants after every run: {verdict}")
    if result.get("tracing"):
        console.print(f"tracing on: {result.get('spans_received', 0)} spans received")
