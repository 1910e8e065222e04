"""Registering a service: what a service declares so that `sagaline serve|relay|migrate <name>`
runs it, and how those declarations are found.

A service is a `ServicePlugin`: its name, its role (the orchestrator, the initiator or a step),
how its parts (the consumer's handler, the HTTP routers, the periodic jobs) are assembled from the
saga's definition and the settings, and the directory of its own Alembic migrations. A step is
usually declared with the SDK (`sagaline.sdk.Step`), which builds its `ServicePlugin`.

Declarations are found in two ways, without editing sagaline:

- installed packages name them as entry points of the group `sagaline.services`
  (`[project.entry-points."sagaline.services"]`, `payment = "my_pkg.plugin:PAYMENT"`);
- a step that is not installed as a package is named as `module:object`, by `--step` on the
  command line or in `SAGALINE_STEPS` (comma-separated), the module being importable.

The reference saga's four services register themselves through entry points, like any other.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from fastapi import APIRouter, FastAPI

from sagaline.delivery.consumer import Handler
from sagaline.domain.definition import REFERENCE_PATTERN, SagaDefinition
from sagaline.service import Job, Runtime, Startup, create_app, effective_definition
from sagaline.settings import Settings
from sagaline.storage import migrate
from sagaline.storage.db import Database

ENTRY_POINT_GROUP = "sagaline.services"
STEPS_VARIABLE = "SAGALINE_STEPS"
DEFAULT_PORT = 8000

HOW_TO_REGISTER = (
    f'register it with an entry point in the group "{ENTRY_POINT_GROUP}" '
    f'([project.entry-points."{ENTRY_POINT_GROUP}"] in its pyproject.toml), '
    f"or name its declaration with --step module:object (or {STEPS_VARIABLE}=module:object)"
)


class Role(StrEnum):
    ORCHESTRATOR = "orchestrator"
    INITIATOR = "initiator"
    STEP = "step"


@dataclass(frozen=True)
class Parts:
    """What a service runs: the consumer's handler, its HTTP routers, its periodic jobs, and
    what it does once before its consumer subscribes."""

    handler: Handler
    routers: list[APIRouter]
    jobs: list[Job] = field(default_factory=list)
    startup: list[Startup] = field(default_factory=list)


Assemble = Callable[[SagaDefinition, Settings], Parts]


@dataclass(frozen=True)
class ServicePlugin:
    """One service's declaration.

    `assemble(definition, settings)` builds its parts; `migrations` is the directory of its own
    Alembic revisions (None: it has no tables of its own), applied after the shared outbox and
    inbox tables and, for a step, the participants' table. `port` is where `serve` listens by
    default."""

    name: str
    role: Role
    assemble: Assemble
    migrations: Path | None = None
    port: int = DEFAULT_PORT

    @property
    def is_step(self) -> bool:
        return self.role is Role.STEP

    def version_locations(self) -> list[Path]:
        """The Alembic version directories of this service's database, in order."""
        return migrate.version_locations(self.migrations, participant=self.is_step)


@runtime_checkable
class Declares(Protocol):
    """What declares a service without being its `ServicePlugin`: a `sagaline.sdk.Step`."""

    def service_plugin(self) -> ServicePlugin: ...


class RegistrationError(ValueError):
    """A service no declaration names, or a declaration that cannot be loaded."""


def load(reference: str) -> ServicePlugin:
    """The `ServicePlugin` a `module:object` reference names (`object` may be dotted)."""
    if re.fullmatch(REFERENCE_PATTERN, reference.strip()) is None:
        raise RegistrationError(f"{reference!r} is not module:object")
    module_name, _, attribute = reference.strip().partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistrationError(f"{reference}: cannot import {module_name}: {exc}") from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise RegistrationError(f"{reference}: {module_name} has no {attribute}") from exc
    if isinstance(found, Declares):
        found = found.service_plugin()
    if not isinstance(found, ServicePlugin):
        raise RegistrationError(
            f"{reference} is a {type(found).__name__}, not a ServicePlugin or a sagaline.sdk.Step"
        )
    return found


def configured_steps(environment: Mapping[str, str] = os.environ) -> list[str]:
    """The `module:object` references of SAGALINE_STEPS (comma-separated) in `environment`
    (this process's by default), if any."""
    value = environment.get(STEPS_VARIABLE, "")
    return [item.strip() for item in value.split(",") if item.strip()]


def registered_names() -> list[str]:
    """The names the installed entry points declare (nothing is imported)."""
    return sorted({entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)})


def _entry_point_plugin(value: str, name: str) -> ServicePlugin:
    plugin = load(value)
    if plugin.name != name:
        raise RegistrationError(f"the entry point {name} = {value} declares {plugin.name!r}")
    return plugin


def discover(steps: Iterable[str] = ()) -> dict[str, ServicePlugin]:
    """Every declaration: the installed entry points', then SAGALINE_STEPS', then `steps`'
    (a later one of the same name wins)."""
    plugins = {
        entry.name: _entry_point_plugin(entry.value, entry.name)
        for entry in entry_points(group=ENTRY_POINT_GROUP)
    }
    for reference in [*configured_steps(), *steps]:
        plugin = load(reference)
        plugins[plugin.name] = plugin
    return plugins


def find(name: str, steps: Sequence[str] = ()) -> ServicePlugin:
    """The declaration of `name`, loading only what may declare it (so that another package's
    broken declaration cannot stop this service): `steps`, then SAGALINE_STEPS, then the entry
    point of that name. An unknown name is refused, naming the known ones and how to register."""
    references = [*configured_steps(), *steps]
    named = {plugin.name: plugin for plugin in map(load, references)}
    if name in named:
        return named[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return _entry_point_plugin(entry.value, entry.name)
    known = ", ".join(sorted({*registered_names(), *named})) or "none"
    raise RegistrationError(f"unknown service {name!r} (known: {known}); {HOW_TO_REGISTER}")


def build_app(plugin: ServicePlugin, settings: Settings | None = None) -> FastAPI:
    """The service's FastAPI app (its consumer and jobs start with it)."""
    settings = settings or Settings()
    definition = effective_definition(settings)
    parts = plugin.assemble(definition, settings)
    runtime = Runtime(
        name=plugin.name,
        settings=settings,
        definition=definition,
        db=Database(settings.database),
        handler=parts.handler,
        routers=parts.routers,
        jobs=parts.jobs,
        startup=parts.startup,
    )
    return create_app(runtime)


def upgrade(plugin: ServicePlugin, database_url: str) -> None:
    """Apply the service's migrations to its database."""
    migrate.upgrade(database_url, plugin.migrations, participant=plugin.is_step)
