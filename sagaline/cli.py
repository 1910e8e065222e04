"""The `sagaline` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sagaline.ports import wait_for_port
from sagaline.stack import Stack, StackConfig, StackError
from services.common.db import redact, redact_text
from services.common.definition import Execution, default_definition_path
from services.registry import PORTS, SERVICES

app = typer.Typer(
    help="Orchestrated sagas over Kafka with a transactional outbox in every service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold passwords
)
console = Console(stderr=True)


def _postgres_server(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise typer.BadParameter(f"not a database URL: {redact_text(url)}") from exc
    if parsed.get_backend_name() != "postgresql":
        raise typer.BadParameter(
            f"expected postgresql://user@host:port, got a {parsed.get_backend_name()} URL"
        )
    return url


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        callback=_postgres_server,
        envvar="SAGALINE_DATABASE_URL",
        help="PostgreSQL server (postgresql://user@host:port); each service gets its own "
        "database there. Default: SQLite files in the state directory.",
    ),
]
BootstrapServers = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        envvar="SAGALINE_BOOTSTRAP_SERVERS",
        help="An external Kafka instead of the embedded broker.",
    ),
]
StateDir = Annotated[
    Path, typer.Option("--state-dir", help="Where SQLite files and process logs go.")
]
ExecutionOption = Annotated[
    Execution | None,
    typer.Option("--execution", help="Override the saga's execution mode."),
]
SagaFile = Annotated[
    Path, typer.Option("--saga-file", help="The Saga resource to run.", exists=True, dir_okay=False)
]
ServiceArg = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")]


def _check_service(service: str) -> str:
    if service not in SERVICES:
        raise typer.BadParameter(
            f"unknown service {service!r}; choose one of {', '.join(SERVICES)}"
        )
    return service


def _logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def _ports(base_port: int) -> dict[str, int]:
    return {service: base_port + (port - PORTS["orchestrator"]) for service, port in PORTS.items()}


def _ensure_ports_free(ports: dict[str, int]) -> None:
    busy = [f"{s} ({p})" for s, p in ports.items() if wait_for_port("127.0.0.1", p, 0.05)]
    if busy:
        raise typer.BadParameter(
            f"ports in use: {', '.join(busy)}; stop what listens there or pass --base-port"
        )


@app.command()
def serve(
    service: ServiceArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: the service's own port.")] = None,
    migrate: Annotated[bool, typer.Option(help="Run the migrations first.")] = False,
) -> None:
    """Run one service (HTTP API and consumer loop)."""
    import uvicorn

    from services.common.migrate import upgrade
    from services.common.settings import Settings
    from services.registry import build_app, is_participant

    _check_service(service)
    settings = Settings()
    _logging(settings.log_level, service)
    if migrate:
        upgrade(settings.database_url, service, participant=is_participant(service))
    uvicorn.run(
        build_app(service, settings),
        host=host,
        port=port or PORTS[service],
        log_level="warning",
        access_log=False,
        loop="uvloop",
        timeout_graceful_shutdown=5,
    )


@app.command()
def relay(service: ServiceArg) -> None:
    """Run the outbox relay of one service's database."""
    from services.common.db import Database
    from services.common.relay import Relay
    from services.common.service import effective_definition, topic_layout
    from services.common.settings import Settings

    _check_service(service)
    settings = Settings()
    _logging(settings.log_level, f"{service}-relay")
    definition = effective_definition(settings)
    partitions, replicas = topic_layout(settings, definition)

    async def main() -> None:
        db = Database(settings.database_url, pool_size=2)
        worker = Relay(
            db,
            service=service,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            listen_timeout_s=settings.relay_listen_timeout_s,
            outbox_retention_s=settings.outbox_retention_s,
            inbox_retention_s=settings.inbox_retention_s,
            purge_interval_s=settings.purge_interval_s,
            create_topics=definition.topics() if settings.create_topics else (),
            partitions=partitions,
            replicas=replicas,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        try:
            await worker.run()
        finally:
            await db.dispose()

    import uvloop

    uvloop.run(main())


@app.command()
def migrate(service: ServiceArg) -> None:
    """Apply the Alembic migrations of one service's database (DATABASE_URL)."""
    from services.common.migrate import upgrade
    from services.common.settings import Settings
    from services.registry import is_participant

    _check_service(service)
    settings = Settings()
    upgrade(settings.database_url, service, participant=is_participant(service))
    console.print(f"{service}: {redact(settings.database_url)} is up to date")


def _stack_config(
    state_dir: Path,
    database_url: str | None,
    bootstrap_servers: str | None,
    saga_file: Path,
    execution: Execution | None,
    base_port: int,
) -> StackConfig:
    return StackConfig(
        state_dir=state_dir,
        database_url=database_url,
        bootstrap_servers=bootstrap_servers,
        saga_file=saga_file,
        execution=execution.value if execution else None,
        ports=_ports(base_port),
    )


@app.command()
def up(
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    execution: ExecutionOption = None,
    state_dir: StateDir = Path(".sagaline"),
    saga_file: SagaFile = default_definition_path(),
    base_port: Annotated[
        int, typer.Option(help="Port of the orchestrator; the others follow.")
    ] = 8080,
) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops every process."""
    config = _stack_config(
        state_dir, database_url, bootstrap_servers, saga_file, execution, base_port
    )
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    with console.status("starting") as status:
        try:
            stack.start(progress=lambda message: status.update(message))
        except StackError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    for service in SERVICES:
        console.print(f"[green]{service:<13}[/green] {stack.service_url(service)}")
    console.print(f"broker        {stack.bootstrap_servers}")
    console.print(f"logs          {stack.logs}")
    console.print("Ctrl-C stops everything.")
    try:
        while True:
            time.sleep(0.5)
            for name in stack.restart_dead():
                console.print(f"[yellow]{name} exited; restarted[/yellow]")
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        stack.stop()


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=1, max=1_000_000, help="Orders to place.")] = 300,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Orders in flight.")] = 16,
    execution: ExecutionOption = None,
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the order mix.")] = 1,
    state_dir: Annotated[
        Path | None, typer.Option(help="Default: a new temporary directory, removed after.")
    ] = None,
    saga_file: SagaFile = default_definition_path(),
    base_port: Annotated[
        int, typer.Option(help="Port of the orchestrator; the others follow.")
    ] = 8080,
) -> None:
    """Start the stack, place orders (a known share must fail), check the invariants, stop."""
    from sagaline.demo import DemoOptions, render, run_demo

    temporary = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="sagaline-demo-")) if temporary else state_dir
    assert directory is not None
    config = _stack_config(
        directory, database_url, bootstrap_servers, saga_file, execution, base_port
    )
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    summary: dict[str, object] = {}
    try:
        with console.status("starting") as status:
            stack.start(progress=lambda message: status.update(message))
        summary = run_demo(stack, DemoOptions(orders, concurrency, seed), console, show=not as_json)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        stack.stop()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    summary["execution"] = (execution.value if execution else None) or "as defined"
    summary["database"] = "postgresql" if database_url else "sqlite"
    if as_json:
        print(json.dumps(summary))
    else:
        render(summary, Console(), title=f"sagaline demo ({summary['database']})")
    if not summary["invariants_ok"] or summary["pending"]:
        raise typer.Exit(1)


@app.command()
def bench(
    orders: Annotated[int, typer.Option(min=1, max=1_000_000, help="Orders per run.")] = 2000,
    concurrency: Annotated[
        str, typer.Option(help="Comma-separated orders in flight, one run each.")
    ] = "16,64,256",
    execution: ExecutionOption = None,
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    saga_file: SagaFile = default_definition_path(),
    base_port: Annotated[
        int, typer.Option(help="Port of the orchestrator; the others follow.")
    ] = 8080,
) -> None:
    """Measure sagas/s, latency, CPU per saga and memory at several loads on one stack."""
    from sagaline.bench import render_bench, run_bench

    try:
        loads = [int(part) for part in concurrency.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter("--concurrency takes whole numbers separated by commas") from exc
    if not loads or min(loads) < 1:
        raise typer.BadParameter("--concurrency takes whole numbers of at least 1")
    directory = Path(tempfile.mkdtemp(prefix="sagaline-bench-"))
    config = _stack_config(
        directory, database_url, bootstrap_servers, saga_file, execution, base_port
    )
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    try:
        with console.status("starting") as status:
            stack.start(progress=lambda message: status.update(message))
        result = run_bench(stack, orders, loads, console, show=not as_json)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    result["database"] = "postgresql" if database_url else "sqlite"
    if as_json:
        print(json.dumps(result))
    else:
        render_bench(result, Console(), title=f"sagaline bench ({result['database']})")
    if not result["invariants_ok"]:
        raise typer.Exit(1)


@app.command()
def verify(
    database_url: DatabaseUrl = None,
    state_dir: StateDir = Path(".sagaline"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the invariants across the four databases; exit 1 naming any violation."""
    from sagaline.databases import database_urls
    from sagaline.verify import verify as check

    urls = database_urls(database_url, state_dir)
    missing = [u for u in urls.values() if u.startswith("sqlite") and not Path(u[10:]).exists()]
    if missing:
        console.print(
            f"[red]no databases in {state_dir}: run `sagaline up` first or pass --state-dir[/red]"
        )
        raise typer.Exit(2)
    report = check(urls)
    if as_json:
        print(json.dumps(report.as_dict()))
    elif report.ok:
        console.print(f"[green]all invariants hold[/green] {report.checked}")
    else:
        for name, details in report.violations.items():
            console.print(f"[red]violated: {name}[/red] ({len(details)}), e.g. {details[:3]}")
    if not report.ok:
        raise typer.Exit(1)
