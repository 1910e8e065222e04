"""Measuring the saga protocol: throughput and latency (`bench`), one relay (`bench relay`),
faults under load (`chaos`) and every schedule in simulation (`simulate`).

The lab's commands, as those of `local` are (see there).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from sagaline.cli.options import (
    ApiToken,
    BasePort,
    BootstrapServers,
    BrokerOption,
    DatabaseChoice,
    DatabaseOption,
    DatabaseUrl,
    ExecutionOption,
    JsonFlag,
    PartitionsOption,
    ProfileDir,
    SagaFile,
    TemporaryStateDir,
    console,
    needs_lab,
)
from sagaline.domain.definition import default_definition_path


def _targets(value: str) -> tuple[str, ...]:
    from sagaline.measure.chaos import TARGETS

    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [part for part in chosen if part not in TARGETS]
    if unknown or not chosen:
        raise typer.BadParameter(
            f"unknown target {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}"
        )
    return chosen


@needs_lab
def chaos(
    duration: Annotated[
        float, typer.Option(min=1, max=86_400, help="Seconds of faults and orders.")
    ] = 60,
    rate: Annotated[
        float, typer.Option(min=0.1, max=10_000, help="Orders placed per second.")
    ] = 20,
    targets: Annotated[
        str,
        typer.Option(
            help="What to hit, comma-separated: services, relays, broker, database "
            "(database: cut a service's connections; PostgreSQL only). Default: all that apply."
        ),
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of the faults and of the order mix.")] = 7,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Mean seconds between faults (random, exponential).")
    ] = 5,
    step_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds before a step is re-sent. Default 2 (the saga's own 10 would make "
            "every lost message cost 10 s); pass the saga's value to run it as defined.",
        ),
    ] = 2,
    quiesce_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for every order to be decided.")
    ] = 180,
    database_url: DatabaseUrl = None,
    broker: BrokerOption = None,
    database: DatabaseOption = DatabaseChoice.SQLITE,
    execution: ExecutionOption = None,
    as_json: JsonFlag = False,
    state_dir: TemporaryStateDir = None,
    saga_file: SagaFile = default_definition_path(),
    base_port: BasePort = 8080,
    partitions: PartitionsOption = 1,
    api_token: ApiToken = None,
    keep: Annotated[
        bool,
        typer.Option(help="Keep the logs and databases (they are always kept when a check fails)."),
    ] = False,
) -> None:
    """Kill services, relays and the broker at random under load; check nothing was lost."""
    from sagaline.cli import session
    from sagaline.measure.chaos import TARGETS, ChaosOptions, render, run_chaos

    on_postgres = bool(database_url) or database is DatabaseChoice.POSTGRES
    applicable = tuple(t for t in TARGETS if t != "database" or on_postgres)
    chosen = _targets(targets) if targets else applicable
    if "database" in chosen and not on_postgres:
        raise typer.BadParameter(
            "the database target needs PostgreSQL: --database postgres or --database-url"
        )
    directory, temporary = session.state_directory(state_dir, "chaos")
    config = session.stack_config(
        directory,
        database_url,
        None,
        saga_file,
        execution,
        base_port,
        api_token,
        broker=broker,
        database=database,
        partitions=partitions,
    )
    config.step_timeout_s = step_timeout
    session.own_databases(config, "chaos")
    options = ChaosOptions(
        duration, rate, chosen, seed, interval, quiesce_timeout_s=quiesce_timeout
    )
    summary: dict[str, Any] = {}

    def kept() -> bool:  # always when a check failed (or the run did not finish)
        return keep or not summary or session.unfinished(summary)

    with session.stack_session(config, temporary=temporary, keep=kept) as stack:
        summary = run_chaos(stack, options, console, show=not as_json)
    session.report(
        summary,
        config,
        as_json=as_json,
        render=render,
        title="sagaline chaos",
        failed=session.unfinished,
        detail=f", seed {seed}",
    )


@needs_lab
def bench(
    ctx: typer.Context,
    orders: Annotated[int, typer.Option(min=1, max=1_000_000, help="Orders per run.")] = 2000,
    concurrency: Annotated[
        str, typer.Option(help="Comma-separated orders in flight, one run each.")
    ] = "16,64,96,128,256",
    warmup: Annotated[
        int,
        typer.Option(
            min=0,
            max=1_000_000,
            help="Orders placed at the highest in-flight count before the measured runs, "
            "and left out of them (their invariants are still checked).",
        ),
    ] = 500,
    execution: ExecutionOption = None,
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    broker: BrokerOption = None,
    database: DatabaseOption = DatabaseChoice.SQLITE,
    as_json: JsonFlag = False,
    saga_file: SagaFile = default_definition_path(),
    base_port: BasePort = 8080,
    partitions: PartitionsOption = 1,
    api_token: ApiToken = None,
    profile: ProfileDir = None,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace",
            help="Run with tracing on: every process exports its spans (OTLP over HTTP) to a "
            "receiver in this command, which counts them.",
        ),
    ] = False,
) -> None:
    """Measure sagas/s, latency, CPU per saga and memory at several loads on one stack."""
    from sagaline.cli import session
    from sagaline.measure.bench import render_bench, run_bench

    if ctx.invoked_subcommand is not None:
        return
    try:
        loads = [int(part) for part in concurrency.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter("--concurrency takes whole numbers separated by commas") from exc
    if not loads or min(loads) < 1:
        raise typer.BadParameter("--concurrency takes whole numbers of at least 1")
    directory = Path(tempfile.mkdtemp(prefix="sagaline-bench-"))
    receiver = None
    if trace:
        from sagaline.traces.otlp_receiver import SpanReceiver

        receiver = SpanReceiver(keep=False)
    config = session.stack_config(
        directory,
        database_url,
        bootstrap_servers,
        saga_file,
        execution,
        base_port,
        api_token,
        broker=broker,
        database=database,
        extra_env=receiver.exporter_env() if receiver is not None else None,
        partitions=partitions,
    )
    with (
        receiver or contextlib.nullcontext(),
        session.stack_session(config, temporary=True) as stack,
    ):
        result = run_bench(
            stack, orders, loads, console, show=not as_json, profile=profile, warmup=warmup
        )
    result["tracing"] = trace
    if receiver is not None:
        result["spans_received"] = receiver.received
    session.report(
        result,
        config,
        as_json=as_json,
        render=render_bench,
        title="sagaline bench",
        failed=lambda result: not result["invariants_ok"],
    )


@needs_lab
def bench_relay(
    messages: Annotated[
        int, typer.Option(min=1, max=10_000_000, help="Outbox rows, committed at once.")
    ] = 20_000,
    keys: Annotated[int, typer.Option(min=1, help="Distinct keys (saga ids), round-robin.")] = 1000,
    broker: BrokerOption = None,
    bootstrap_servers: BootstrapServers = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
    profile: ProfileDir = None,
) -> None:
    """Measure one outbox relay on PostgreSQL: rows committed to published, and per-key order."""
    from sagaline.cli import session
    from sagaline.measure.bench_relay import RelayBenchOptions, render_relay_bench, run_relay_bench

    directory = Path(tempfile.mkdtemp(prefix="sagaline-bench-relay-"))
    config = session.stack_config(
        directory,
        database_url,
        bootstrap_servers,
        default_definition_path(),
        None,
        8080,
        None,
        broker=broker,
        database=DatabaseChoice.POSTGRES,
    )
    session.own_databases(config, "bench")  # dropped by the bench itself
    options = RelayBenchOptions(messages=messages, keys=keys, profile=profile)
    with session.run(config, temporary=True):  # the bench starts and stops its own parts
        result = run_relay_bench(config, options, console, show=not as_json)
    session.report(
        result,
        config,
        as_json=as_json,
        render=render_relay_bench,
        title="sagaline bench relay",
        failed=lambda result: not result["order_ok"] or bool(result["missing"]),
    )


@needs_lab
def simulate(
    execution: ExecutionOption = None,
    exhaustive: Annotated[
        bool,
        typer.Option(
            "--exhaustive",
            help="Every schedule of the saga up to --max-faults faults (else random ones).",
        ),
    ] = False,
    max_faults: Annotated[
        int | None,
        typer.Option(
            min=0, max=50, help="Faults per schedule at most. Default: 2 exhaustive, 6 random."
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Random schedules to run.")] = 1000,
    seed_start: Annotated[int, typer.Option(min=0, help="The first seed.")] = 0,
    replay: Annotated[
        int | None,
        typer.Option(min=0, help="Run this seed alone and print its trace (and its violation)."),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            min=10,
            help="Events a schedule may take to become quiescent (liveness). "
            "Default: 120 exhaustive, 400 random.",
        ),
    ] = None,
    shrink: Annotated[
        bool, typer.Option(help="Shrink a violating schedule before printing it.")
    ] = True,
    saga_file: SagaFile = default_definition_path(),
    calling_steps: Annotated[
        str | None,
        typer.Option(
            help="The calling steps, comma-separated ('' for none). Default: each step whose "
            "declaration imports and is a sagaline.sdk.Step with calls=.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The saga protocol in simulation: the real decisions, a seeded scheduler, every fault."""
    from sagaline.simulation.run import SimulateOptions, run_simulation

    options = SimulateOptions(
        saga_file=saga_file,
        execution=execution,
        exhaustive=exhaustive,
        max_faults=max_faults,
        seeds=seeds,
        seed_start=seed_start,
        replay=replay,
        max_steps=max_steps,
        shrink=shrink,
        calling_steps=None if calling_steps is None else calling_steps.split(","),
    )
    try:
        summary = run_simulation(options, console, show=not as_json)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(summary))
    if summary["violations"]:
        raise typer.Exit(1)
