"""`sagaline simulate`: the saga protocol under every schedule up to a bound of faults
(`--exhaustive`), or under random schedules from seeds, checked after each one against the
invariants of docs/design.md ("Invariants"). The model and the search are in
`sagaline.simulation`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from sagaline.domain.definition import Execution, load_definition
from sagaline.lab.progress import counting_progress
from sagaline.simulation.calls import calling_steps
from sagaline.simulation.explore import Report, Violation, exhaustive, random_runs, replay_seed

EXHAUSTIVE_MAX_FAULTS = 2
RANDOM_MAX_FAULTS = 6
EXHAUSTIVE_MAX_STEPS = 120
RANDOM_MAX_STEPS = 400
TRACE_HEAD, TRACE_TAIL = 150, 30  # lines of a long trace shown (a livelock repeats itself)


@dataclass(frozen=True)
class SimulateOptions:
    saga_file: Path
    execution: Execution | None = None
    exhaustive: bool = False
    max_faults: int | None = None
    seeds: int = 1000
    seed_start: int = 0
    replay: int | None = None
    max_steps: int | None = None
    shrink: bool = True
    calling_steps: list[str] | None = None  # None: from the steps' declarations


def run_simulation(options: SimulateOptions, console: Console, *, show: bool) -> dict[str, Any]:
    """Run what the options ask; returns the JSON summary (its `violations` is a count)."""
    definition = load_definition(options.saga_file)
    if options.execution is not None:
        definition = definition.with_execution(options.execution)
    calling = calling_steps(definition, options.calling_steps)
    if options.replay is not None:
        return _replay(definition, options, console, show=show, calling=calling)
    if options.exhaustive:
        max_faults = _pick(options.max_faults, EXHAUSTIVE_MAX_FAULTS)
        max_steps = _pick(options.max_steps, EXHAUSTIVE_MAX_STEPS)
        spinner = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
            transient=True,
        )
        with spinner:
            task = spinner.add_task("exploring", total=None)
            report = exhaustive(
                definition,
                max_faults=max_faults,
                max_steps=max_steps,
                progress=lambda states: spinner.update(
                    task, description=f"exploring: {states:,} states"
                ),
                shrinking=options.shrink,
                calling=calling,
            )
    else:
        max_faults = _pick(options.max_faults, RANDOM_MAX_FAULTS)
        max_steps = _pick(options.max_steps, RANDOM_MAX_STEPS)
        seeds = range(options.seed_start, options.seed_start + options.seeds)
        progress = counting_progress(console, show=show, label_width=10)
        with progress:
            bar = progress.add_task("schedules", total=len(seeds))
            report = random_runs(
                definition,
                seeds,
                max_faults=max_faults,
                max_steps=max_steps,
                progress=lambda done: progress.update(bar, completed=done),
                shrinking=options.shrink,
                calling=calling,
            )
            progress.update(bar, completed=len(seeds))
    summary = report.as_json()
    if show:
        render(report, console)
    return summary


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _replay(
    definition: Any,
    options: SimulateOptions,
    console: Console,
    *,
    show: bool,
    calling: dict[str, int],
) -> dict[str, Any]:
    seed = options.replay
    assert seed is not None
    max_faults = _pick(options.max_faults, RANDOM_MAX_FAULTS)
    max_steps = _pick(options.max_steps, RANDOM_MAX_STEPS)
    world, violation = replay_seed(
        definition,
        seed,
        max_faults=max_faults,
        max_steps=max_steps,
        shrinking=options.shrink,
        calling=calling,
    )
    trace = [f"scenario: {world.m.describe()}", *(world.trace or [])]
    summary: dict[str, Any] = {
        "mode": "replay",
        "execution": str(definition.spec.execution),
        "saga": definition.name,
        "seed": seed,
        "max_faults": max_faults,
        "max_steps": max_steps,
        "schedules": 1,
        "violations": 0 if violation is None else 1,
        "details": [] if violation is None else [violation.as_json()],
        "trace": trace,
        "seconds": 0.0,
    }
    if show:
        console.print(f"[bold]seed {seed}[/bold]: the schedule as it ran")
        _print_trace(console, trace)
        if violation is None:
            console.print("[green]every invariant holds[/green]")
        else:
            _print_violation(console, violation, str(definition.spec.execution))
    return summary


def render(report: Report, console: Console) -> None:
    table = Table(title=f"sagaline simulate ({report.mode}, {report.execution})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("saga", f"{report.saga}: {len(report.scenarios)} business answers")
    table.add_row("calling steps", ", ".join(report.calling) or "none")
    table.add_row("faults per schedule", f"up to {report.max_faults}")
    table.add_row("schedules", f"{report.schedules:,}")
    if report.mode == "exhaustive":
        table.add_row("states", f"{report.states:,} ({report.revisits:,} met again)")
        table.add_row("transitions", f"{report.transitions:,}")
    else:
        lo, hi = report.seeds or (0, -1)
        table.add_row("seeds", f"{lo}..{hi}")
        faults = ", ".join(f"{k} {v:,}" for k, v in sorted(report.faults.items()))
        table.add_row("faults injected", faults or "none")
    colour = "green" if not report.violating_schedules else "red"
    table.add_row("violations", f"[{colour}]{report.violating_schedules:,}[/{colour}]")
    table.add_row("seconds", f"{report.seconds:.1f}")
    console.print(table)
    for violation in report.violations:
        _print_violation(console, violation, report.execution)


def _print_violation(console: Console, violation: Violation, execution: str) -> None:
    console.print(f"[red]violated[/red]: {escape('; '.join(violation.problems))}")
    if violation.seed is not None:
        replay = f"sagaline simulate --execution {execution} --replay {violation.seed}"
        console.print(f"replay: {replay}")
    console.print(f"minimal schedule ({len(violation.script)} choices, faults in capitals):")
    _print_trace(console, violation.trace)


def _print_trace(console: Console, trace: list[str]) -> None:
    shown = trace
    if len(trace) > TRACE_HEAD + TRACE_TAIL:
        skipped = len(trace) - TRACE_HEAD - TRACE_TAIL
        shown = [*trace[:TRACE_HEAD], f"  ... {skipped} lines ...", *trace[-TRACE_TAIL:]]
    for line in shown:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
