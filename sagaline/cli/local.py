"""The stack on one machine: run it (`up`), drive it once (`demo`), check its databases
(`verify`) and read one saga's timeline (`trace`).

Commands of the lab (`sagaline[lab]`, not in the image): their lab modules are imported in
their bodies, and `needs_lab` says what to install where the lab is missing.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

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
    SagaFile,
    SagaFiles,
    StateDir,
    TemporaryStateDir,
    console,
    needs_lab,
)
from sagaline.domain.definition import default_definition_path
from sagaline.services.registry import PORTS
from sagaline.storage.db import redact

if TYPE_CHECKING:
    from sagaline.lab.stack import StackConfig
    from sagaline.traces.span_tree import TracePrinter

TOKEN_FILE = "api-token"
ORCHESTRATOR_URL = f"http://127.0.0.1:{PORTS['orchestrator']}"


def _token_file(state_dir: Path, token: str) -> Path:
    """Where `sagaline up` leaves a generated token for its user: readable by them only."""
    path = state_dir.resolve() / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return path


@needs_lab
def up(
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    broker: BrokerOption = None,
    database: DatabaseOption = DatabaseChoice.SQLITE,
    execution: ExecutionOption = None,
    state_dir: StateDir = Path(".sagaline"),
    saga_file: SagaFiles = None,
    base_port: BasePort = 8080,
    partitions: PartitionsOption = 1,
    api_token: ApiToken = None,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace",
            help="Print each trace's spans here, as a tree, once the trace is quiet (the "
            "processes export OTLP to a receiver this command runs).",
        ),
    ] = False,
) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops every process. Several
    `--saga-file`s run side by side: the order saga keeps ports 8080-8083, every service of
    another Saga gets the next free port (printed) and a database of its own."""
    from sagaline.cli import session

    first, *more = saga_file or [default_definition_path()]

    with contextlib.ExitStack() as resources:
        printer = None
        extra_env: dict[str, str] = {}
        if trace:
            from sagaline.traces.otlp_receiver import SpanReceiver
            from sagaline.traces.span_tree import TracePrinter

            printer = TracePrinter(console)
            receiver = resources.enter_context(SpanReceiver(on_spans=printer.add))
            extra_env = receiver.exporter_env()
        _up(
            session.stack_config(
                state_dir,
                database_url,
                bootstrap_servers,
                first,
                execution,
                base_port,
                api_token,
                broker=broker,
                database=database,
                extra_env=extra_env,
                partitions=partitions,
                more_saga_files=more,
            ),
            state_dir,
            api_token,
            printer,
        )


def _up(
    config: StackConfig, state_dir: Path, api_token: str | None, printer: TracePrinter | None
) -> None:
    from sagaline.cli import session

    with session.stack_session(config) as stack:
        width = max(13, *(len(service) + 1 for service in stack.services))
        for service in stack.services:
            console.print(f"[green]{service:<{width}}[/green] {stack.service_url(service)}")
        console.print(f"broker        {stack.bootstrap_servers} ({config.broker})")
        if stack.server_url:
            console.print(f"postgresql    {redact(stack.server_url)}")
        console.print(f"logs          {stack.logs}")
        if api_token:
            console.print("api token     the one given (--api-token or SAGALINE_API_TOKEN)")
        else:
            assert config.api_token is not None
            token_path = _token_file(state_dir, config.api_token)
            console.print(f"api token     in {token_path} (send Authorization: Bearer <token>)")
        console.print("Ctrl-C (or SIGTERM) stops everything.")
        try:
            while True:
                time.sleep(0.5)
                if stack.restart_broker():
                    console.print("[yellow]the broker exited; restarted[/yellow]")
                for name in stack.restart_dead():
                    console.print(f"[yellow]{name} exited; restarted[/yellow]")
                if printer is not None:
                    printer.print_quiet()
        except KeyboardInterrupt:
            console.print("stopping")


@needs_lab
def demo(
    orders: Annotated[int, typer.Option(min=1, max=1_000_000, help="Orders to place.")] = 300,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Orders in flight.")] = 16,
    execution: ExecutionOption = None,
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    broker: BrokerOption = None,
    database: DatabaseOption = DatabaseChoice.SQLITE,
    as_json: JsonFlag = False,
    seed: Annotated[int, typer.Option(help="Seed of the order mix.")] = 1,
    state_dir: TemporaryStateDir = None,
    saga_file: SagaFile = default_definition_path(),
    base_port: BasePort = 8080,
    partitions: PartitionsOption = 1,
    api_token: ApiToken = None,
) -> None:
    """Start the stack, place orders (a known share must fail), check the invariants, stop."""
    from sagaline.cli import session
    from sagaline.lab.demo import DemoOptions, render, run_demo

    directory, temporary = session.state_directory(state_dir, "demo")
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
        partitions=partitions,
    )
    with session.stack_session(config, temporary=temporary) as stack:
        summary = run_demo(stack, DemoOptions(orders, concurrency, seed), console, show=not as_json)
    summary["execution"] = (execution.value if execution else None) or "as defined"
    session.report(
        summary,
        config,
        as_json=as_json,
        render=render,
        title="sagaline demo",
        failed=session.unfinished,
    )


@needs_lab
def verify(
    database_url: DatabaseUrl = None,
    state_dir: StateDir = Path(".sagaline"),
    saga_file: SagaFiles = None,
    database_prefix: Annotated[
        str,
        typer.Option(
            help="Prefix of the database names on PostgreSQL (a kept `sagaline chaos` run "
            "names its databases chaos_<run>_orderdb, ...: pass chaos_<run>_)."
        ),
    ] = "",
    as_json: JsonFlag = False,
) -> None:
    """Check the invariants of each Saga (`--saga-file`, as `up` ran them) across its services'
    databases: every saga ended, a COMPLETED saga has every step's effect standing and a
    compensated one none (the SDK's ledger at each step); for the order saga also its orders
    and books. Exit 1 naming any violation."""
    from sagaline.domain.definition import load_definition
    from sagaline.lab.databases import database_urls
    from sagaline.lab.step_ledgers import verify_saga
    from sagaline.services.registry import instances_of

    results = {}
    for path in saga_file or [default_definition_path()]:
        definition = load_definition(path)
        names = {instance.service: instance.database for instance in instances_of(definition)}
        urls = database_urls(database_url, state_dir, prefix=database_prefix, services=names)
        missing = [u for u in urls.values() if u.startswith("sqlite") and not Path(u[10:]).exists()]
        if missing:
            console.print(
                f"[red]no databases of the Saga {definition.name} in {state_dir}: run `sagaline "
                f"up --saga-file {path}` first, or pass --state-dir[/red]"
            )
            raise typer.Exit(2)
        results[definition.name] = verify_saga(definition, urls)
    if as_json:
        reports = {name: report.as_dict() for name, report in results.items()}
        print(json.dumps(next(iter(reports.values())) if len(reports) == 1 else reports))
    for name, report in results.items():
        if as_json:
            break
        if report.ok:
            console.print(f"[green]{name}: all invariants hold[/green] {report.checked}")
        for invariant, details in report.violations.items():
            console.print(
                f"[red]{name}: violated: {invariant}[/red] ({len(details)}), e.g. {details[:3]}"
            )
    if not all(report.ok for report in results.values()):
        raise typer.Exit(1)


@needs_lab
def trace(
    saga_id: Annotated[str, typer.Argument(help="The saga's id (the order's id).")],
    url: Annotated[str, typer.Option(help="The orchestrator's address.")] = ORCHESTRATOR_URL,
    api_token: Annotated[
        str | None,
        typer.Option(
            "--api-token",
            envvar="SAGALINE_API_TOKEN",
            show_default=False,
            help="Sent as a bearer token (reads need none; a proxy in front may).",
        ),
    ] = None,
) -> None:
    """One saga's timeline: each command, reply, re-send, dead letter and compensation, with
    the offset from its start and the reason of a failure. Exit 1 if there is no such saga,
    2 if the orchestrator cannot be asked."""
    from sagaline.traces.saga_timeline import TraceError, fetch_saga, parse_saga_id, render

    try:
        saga = fetch_saga(url, parse_saga_id(saga_id), token=api_token)
    except TraceError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(exc.exit_code) from exc
    render(saga, Console())
