"""One run of the stack by a command, written once: `up`, `demo`, `chaos`, `bench` and
`bench relay` configure it, start it, run, stop it, clean up and report the same way.

`stack_session` checks the ports are free, takes SIGTERM as Ctrl-C, starts the stack under a
status line and stops it at the end; a part that cannot start (StackError) is named and the
command exits 1. A temporary state directory is removed after, and a run's own databases (on a
given server, under a prefix) are dropped, unless the run asks to keep them. `report` ends every
measuring command.

A module of the lab (`sagaline[lab]`): the commands import it in their bodies.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from sqlalchemy.engine import make_url

from sagaline.cli.options import BrokerChoice, DatabaseChoice, console
from sagaline.domain.definition import Execution
from sagaline.lab.databases import drop
from sagaline.lab.ports import wait_for_port
from sagaline.lab.stack import Stack, StackConfig, StackError
from sagaline.services.registry import PORTS


def stack_config(
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
    more_saga_files: list[Path] | None = None,
) -> StackConfig:
    """The stack the common options describe (a broker kind, a database, ports from base_port)."""
    if broker is None:
        broker = BrokerChoice.KAFKA if bootstrap_servers else BrokerChoice.EMBEDDED
    return StackConfig(
        state_dir=state_dir,
        database_url=database_url,
        database="postgres" if database is DatabaseChoice.POSTGRES else "sqlite",
        bootstrap_servers=bootstrap_servers,
        broker="kafka" if broker is BrokerChoice.KAFKA else "embedded",
        saga_file=saga_file,
        more_saga_files=list(more_saga_files or []),
        execution=execution.value if execution else None,
        ports=_ports(base_port),
        api_token=api_token or secrets.token_urlsafe(32),
        extra_env=extra_env or {},
        topic_partitions=partitions,
    )


def state_directory(given: Path | None, command: str) -> tuple[Path, bool]:
    """The state directory given, or a new temporary one (True: remove it after the run)."""
    if given is not None:
        return given, False
    return Path(tempfile.mkdtemp(prefix=f"sagaline-{command}-")), True


def own_databases(config: StackConfig, run: str) -> None:
    """On a given server, a run of its own: fresh databases under a prefix, dropped after."""
    if config.database_url:
        config.database_prefix = f"{run}_{uuid.uuid4().hex[:8]}_"


def _ports(base_port: int) -> dict[str, int]:
    return {service: base_port + (port - PORTS["orchestrator"]) for service, port in PORTS.items()}


def _ensure_ports_free(ports: dict[str, int]) -> None:
    busy = [f"{s} ({p})" for s, p in ports.items() if wait_for_port("127.0.0.1", p, 0.05)]
    if busy:
        raise typer.BadParameter(
            f"ports in use: {', '.join(busy)}; stop what listens there or pass --base-port"
        )


def _stop_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does: the stack's processes are stopped too,
    rather than left running without their parent."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _never() -> bool:
    return False


@contextlib.contextmanager
def run(
    config: StackConfig,
    *,
    temporary: bool = False,
    keep: Callable[[], bool] = _never,
    stack: Stack | None = None,
) -> Iterator[None]:
    """A run: SIGTERM as Ctrl-C, a StackError named (exit 1); at the end `stack` (if any) stopped,
    then what `keep()` keeps is named, else the run's own databases dropped and a `temporary`
    state directory removed. Without a stack for a command whose runner starts its own parts."""
    _stop_on_sigterm()
    try:
        yield
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        if stack is not None:
            stack.stop()  # each process exports its last spans as it exits
        own = stack.urls if stack and config.database_url and config.database_prefix else None
        if keep():  # what went wrong can be read in the logs and the databases
            console.print(f"kept: logs and SQLite files in {config.state_dir}")
            if own:
                console.print(
                    f"kept: databases {', '.join(_database_names(own))} (sagaline verify "
                    f"--database-url URL --database-prefix {config.database_prefix})"
                )
        else:
            if own:
                drop(own)
            if temporary:
                shutil.rmtree(config.state_dir, ignore_errors=True)


@contextlib.contextmanager
def stack_session(
    config: StackConfig, *, temporary: bool = False, keep: Callable[[], bool] = _never
) -> Iterator[Stack]:
    """The stack of `config`, started under a status line, for the block; a `run` around it."""
    try:
        stack = Stack(config)  # every service of the Saga file, each with its port
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    _ensure_ports_free(config.ports)
    with run(config, temporary=temporary, keep=keep, stack=stack):
        with console.status("starting") as status:
            stack.start(progress=status.update)
        yield stack


def _database_names(urls: dict[str, str]) -> list[str]:
    return [str(make_url(url).database) for url in urls.values()]


def _label(summary: dict[str, Any], config: StackConfig) -> None:
    """Which broker and database a run's summary was measured on."""
    postgres = config.database_url is not None or config.database == "postgres"
    summary["database"] = "postgresql" if postgres else "sqlite"
    summary["broker"] = config.broker
    summary["partitions"], _ = config.topic_layout()


def _parts(summary: dict[str, Any]) -> str:
    partitions = f"{summary['partitions']} partition" + ("s" if summary["partitions"] > 1 else "")
    return f"{summary['broker']}, {summary['database']}, {partitions}"


def report(
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


def unfinished(summary: dict[str, Any]) -> bool:
    """A run with an invariant violated or an order still pending."""
    return not summary["invariants_ok"] or bool(summary["pending"])
