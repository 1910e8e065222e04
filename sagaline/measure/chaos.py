"""`sagaline chaos`: the stack under a steady order rate while its parts are killed at random.

Faults come at random moments drawn from the seed: SIGKILL of a service, of a relay or of the
embedded broker (which loses its topics, messages and committed offsets), and on PostgreSQL the
cutting of a service's database connections. Each victim is started again after a short random
downtime. When the time is up the faults stop, the run waits (with a deadline) until every order
is decided and every saga has ended, and then checks the invariants across the four databases.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sagaline.domain.clock import as_utc
from sagaline.lab.demo import sparkline
from sagaline.lab.load import bearer
from sagaline.lab.load import seed as seed_world
from sagaline.lab.scenario import Scenario, plan
from sagaline.lab.stack import Stack
from sagaline.lab.verify import rows as read_rows
from sagaline.lab.verify import verify
from sagaline.services.registry import SERVICES

TARGETS = ("services", "relays", "broker", "database")
# Each target's faults, by the kind the summary counts them under.
KIND_OF_TARGET = {
    "services": "service",
    "relays": "relay",
    "broker": "broker",
    "database": "database",
}
MARKS = {"service": "S", "relay": "R", "broker": "B", "database": "D"}
UNFINISHED_SAGAS = ("RUNNING", "COMPENSATING")


@dataclass(frozen=True)
class ChaosOptions:
    duration_s: float = 60.0
    rate: float = 20.0
    targets: tuple[str, ...] = TARGETS
    seed: int = 7
    mean_interval_s: float = 5.0
    max_downtime_s: float = 3.0
    quiesce_timeout_s: float = 180.0


@dataclass(frozen=True)
class Fault:
    kind: str  # service, relay, broker or database
    victim: str
    delay_s: float  # after the previous fault was repaired
    downtime_s: float


@dataclass
class Injected:
    fault: Fault
    at: datetime
    repaired_at: datetime | None = None


def fault_plan(options: ChaosOptions) -> Iterator[Fault]:
    """The faults of a run, in order: the same seed gives the same faults. Kinds come in rounds
    (every target once per round, in a random order) so a short run still hits each of them."""
    rng = random.Random(options.seed)
    victims = {
        "service": list(SERVICES),
        "relay": [f"{service}-relay" for service in SERVICES],
        "broker": ["broker"],
        "database": list(SERVICES),
    }
    kinds = [KIND_OF_TARGET[target] for target in options.targets]
    while True:
        for kind in rng.sample(kinds, len(kinds)):
            yield Fault(
                kind=kind,
                victim=rng.choice(victims[kind]),
                delay_s=rng.expovariate(1 / options.mean_interval_s),
                downtime_s=0.0 if kind == "database" else rng.uniform(0.2, options.max_downtime_s),
            )


class Injector:
    """Applies faults to a running stack, and repairs each before the next."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.injected: list[Injected] = []
        self.unexpected_exits: list[str] = []

    async def run(
        self, faults: Iterator[Fault], until: float, every_kind: Collection[str] = ()
    ) -> None:
        """Inject `faults` in turn, each after its delay, until `until`; past it, only those of
        `every_kind` not injected yet, at once. A slow repair (Apache Kafka takes 10-25 s to
        come back from a kill) must not leave a short run without one of its kinds."""
        missing = set(every_kind)
        for fault in faults:
            start = time.monotonic() + fault.delay_s
            if start >= until:
                if not missing:
                    return
                if fault.kind not in missing:
                    continue
                start = time.monotonic()
            await asyncio.sleep(start - time.monotonic())
            await self.inject(fault)
            missing.discard(fault.kind)

    async def inject(self, fault: Fault) -> None:
        record = Injected(fault, datetime.now(UTC))
        self.injected.append(record)
        try:
            if fault.kind == "broker":
                await asyncio.to_thread(self.stack.kill_broker)
            elif fault.kind == "database":
                await asyncio.to_thread(self.stack.terminate_connections, fault.victim)
            else:
                await asyncio.to_thread(self.stack.kill, fault.victim)
            await asyncio.sleep(fault.downtime_s)
        finally:
            await self.repair(expected=frozenset({fault.victim}))
            record.repaired_at = datetime.now(UTC)

    async def repair(self, expected: frozenset[str] = frozenset()) -> None:
        """Bring back the broker and every dead process; note deaths no fault caused."""
        broker = await asyncio.to_thread(self.stack.restart_broker)
        restarted = await asyncio.to_thread(self.stack.restart_dead)
        restarted += ["broker"] if broker else []
        self.unexpected_exits += [name for name in restarted if name not in expected]


@dataclass
class Placement:
    """The open-loop order generator: `rate` orders a second, whatever the system's state."""

    client: aiohttp.ClientSession
    order_url: str
    bodies: Iterator[dict[str, Any]]
    rate: float
    placed: int = 0
    retries: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, until: float) -> None:
        start = time.monotonic()
        for index, body in enumerate(self.bodies):
            due = start + index / self.rate
            if due >= until:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self._place(body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float) -> None:
        """Let the orders still being placed get through (their service is back by now)."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()

    async def _place(self, body: dict[str, Any]) -> None:
        """POST until the order is taken. A connection refused or a 5xx took nothing; a response
        lost after the order was taken makes this a second order, which is still a real order
        (the counts come from the database, not from here)."""
        delay = 0.1
        while True:
            try:
                async with self.client.post(self.order_url, json=body) as response:
                    if response.status < 500:
                        if response.status >= 400:
                            self.refused[response.status] += 1
                        else:
                            self.placed += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def order_bodies(options: ChaosOptions, run_id: str) -> tuple[Scenario, Iterator[dict[str, Any]]]:
    count = int(options.duration_s * options.rate) + 1
    scenario = plan(count, seed=options.seed, run_id=run_id)
    return scenario, iter([order.body for order in scenario.orders])


async def unfinished_count(client: aiohttp.ClientSession, stack: Stack) -> int:
    """Orders still pending plus sagas not yet ended; -1 while a service does not answer."""
    try:
        async with client.get(f"{stack.service_url('order')}/orders/summary") as response:
            orders = await response.json()
        async with client.get(f"{stack.service_url('orchestrator')}/sagas/summary") as response:
            sagas = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return -1
    return int(orders["PENDING"]) + sum(int(sagas[s]) for s in UNFINISHED_SAGAS)


async def _chaos(
    stack: Stack, options: ChaosOptions, show: Callable[[str, float, float], None]
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    scenario, bodies = order_bodies(options, run_id)
    injector = Injector(stack)
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers=bearer(stack.config.api_token)
    ) as client:
        await seed_world(client, {s: stack.service_url(s) for s in SERVICES}, scenario)
        placement = Placement(client, f"{stack.service_url('order')}/orders", bodies, options.rate)
        started = time.monotonic()
        until = started + options.duration_s
        kinds = {KIND_OF_TARGET[target] for target in options.targets}
        faults = asyncio.create_task(injector.run(fault_plan(options), until, every_kind=kinds))
        load = asyncio.create_task(placement.run(until))
        while not (faults.done() and load.done()):
            show("faults and orders", time.monotonic() - started, options.duration_s)
            await asyncio.wait({faults, load}, timeout=0.5)
        await faults  # re-raises what went wrong in the harness itself
        await load
        await injector.repair()
        await placement.drain(timeout_s=30)
        quiet_from = time.monotonic()
        deadline = quiet_from + options.quiesce_timeout_s
        unfinished = await unfinished_count(client, stack)
        while unfinished != 0 and time.monotonic() < deadline:
            show(f"quiescing: {max(unfinished, 0)} unfinished", time.monotonic() - quiet_from, 0)
            await injector.repair()  # a process that died by itself is a finding, and is restarted
            await asyncio.sleep(0.5)
            unfinished = await unfinished_count(client, stack)
        quiesced_s = time.monotonic() - quiet_from
    return _summary(stack, options, injector, placement, quiesced_s)


def _as_utc(value: Any) -> datetime:
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))


def recovery_times(injected: list[Injected], decided: list[datetime]) -> list[float | None]:
    """Per fault: seconds from the fault to the next order decided, None if none was."""
    ordered = sorted(decided)
    result: list[float | None] = []
    for record in injected:
        after = next((moment for moment in ordered if moment > record.at), None)
        result.append(None if after is None else (after - record.at).total_seconds())
    return result


def _summary(
    stack: Stack,
    options: ChaosOptions,
    injector: Injector,
    placement: Placement,
    quiesced_s: float,
) -> dict[str, Any]:
    [orders] = read_rows(stack.urls["order"], "SELECT id, status, decided_at FROM orders")
    statuses = Counter(str(status) for _, status, _ in orders)
    decided = [_as_utc(moment) for _, _, moment in orders if moment is not None]
    recoveries = recovery_times(injector.injected, decided)
    by_kind: dict[str, float] = {}
    for record, seconds in zip(injector.injected, recoveries, strict=True):
        if seconds is not None:
            kind = record.fault.kind
            by_kind[kind] = round(max(by_kind.get(kind, 0.0), seconds), 2)
    report = verify(stack.urls)
    known = [s for s in recoveries if s is not None]
    return {
        "orders": len(orders),
        "approved": statuses.get("APPROVED", 0),
        "rejected": statuses.get("REJECTED", 0),
        "pending": statuses.get("PENDING", 0),
        "pending_orders": [str(oid) for oid, status, _ in orders if status == "PENDING"][:10],
        "faults": dict(Counter(record.fault.kind for record in injector.injected)),
        "max_recovery_s": round(max(known), 2) if known else None,
        "recovery_s_by_kind": by_kind,
        "faults_without_recovery": sum(1 for s in recoveries if s is None),
        "invariants_ok": report.ok,
        "invariants": report.as_dict(),
        "quiesced_in_s": round(quiesced_s, 1),
        "unexpected_exits": injector.unexpected_exits,
        "placement_retries": placement.retries,
        "placement_refused": dict(placement.refused),
        "duration_s": options.duration_s,
        "rate": options.rate,
        "seed": options.seed,
        "targets": list(options.targets),
        "timeline": timeline(injector.injected, decided),
        "fault_log": [
            {
                "kind": record.fault.kind,
                "victim": record.fault.victim,
                "at": record.at.isoformat(),
                "downtime_s": round(record.fault.downtime_s, 2),
                "recovery_s": None if seconds is None else round(seconds, 2),
            }
            for record, seconds in zip(injector.injected, recoveries, strict=True)
        ],
    }


def timeline(
    injected: list[Injected], decided: list[datetime], columns: int = 60
) -> dict[str, Any]:
    """Orders decided per slice of the run, and which faults fell in each slice."""
    moments = decided + [record.at for record in injected]
    if not moments:
        return {"decided": [], "faults": ""}
    first, last = min(moments), max(moments)
    width = max((last - first).total_seconds() / columns, 1e-6)

    def column(moment: datetime) -> int:
        return min(columns - 1, int((moment - first).total_seconds() / width))

    counts = [0] * columns
    for moment in decided:
        counts[column(moment)] += 1
    marks = [" "] * columns
    for record in injected:
        marks[column(record.at)] = MARKS[record.fault.kind]
    return {"decided": counts, "faults": "".join(marks), "seconds_per_column": round(width, 2)}


def run_chaos(
    stack: Stack, options: ChaosOptions, console: Console, *, show: bool
) -> dict[str, Any]:
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    with progress:
        task = progress.add_task("faults and orders", total=options.duration_s)

        def update(description: str, elapsed: float, total: float) -> None:
            progress.update(task, description=description, completed=elapsed, total=total or None)

        return asyncio.run(_chaos(stack, options, update))


def render(summary: dict[str, Any], console: Console, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for name in ("orders", "approved", "rejected", "pending"):
        table.add_row(name, str(summary[name]))
    for kind, count in sorted(summary["faults"].items()):
        longest = summary["recovery_s_by_kind"].get(kind)
        recovery = f"  (longest recovery {longest:.1f} s)" if longest is not None else ""
        table.add_row(f"faults: {kind}", f"{count}{recovery}")
    longest = summary["max_recovery_s"]
    table.add_row("longest recovery", "-" if longest is None else f"{longest:.1f} s")
    table.add_row("quiesced in", f"{summary['quiesced_in_s']:.1f} s")
    table.add_row("unexpected exits", str(len(summary["unexpected_exits"])))
    console.print(table)
    line = summary["timeline"]
    if line["decided"]:
        console.print(f"orders decided  {sparkline([float(c) for c in line['decided']])}")
        console.print(f"faults          {line['faults']}")
        console.print(
            f"                (S service, R relay, B broker, D database cut;"
            f" {line['seconds_per_column']} s per column)"
        )
    invariants = summary["invariants"]
    if invariants["ok"] and not summary["pending"]:
        console.print("[green]every order decided; invariants: all hold[/green]")
    if summary["pending"]:
        console.print(f"[red]{summary['pending']} orders pending[/red], e.g.")
        for order_id in summary["pending_orders"]:
            console.print(f"  {order_id}")
    for name, violation in invariants["violations"].items():
        console.print(
            f"[red]violated: {name}[/red]: {violation['count']}, e.g. {violation['sample']}"
        )
