"""Registering a service without editing sagaline: the reference services are found through
their entry points, a step defined elsewhere (tests/unit/shipping_step) through `--step` or
SAGALINE_STEPS, and a name nothing declares is refused, saying how to register."""

from __future__ import annotations

import re
import sqlite3
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sagaline import registration
from sagaline.cli import app
from sagaline.domain.definition import default_definition_path, load_definition
from sagaline.registration import RegistrationError, Role, ServicePlugin
from sagaline.sdk import Step
from sagaline.service import effective_definition
from sagaline.services import registry
from sagaline.settings import Settings
from tests.unit import shipping_step

SHIPPING = "tests.unit.shipping_step:SHIPPING"
DEFINITION = load_definition(default_definition_path())
REFERENCE_ROLES = {
    "orchestrator": Role.ORCHESTRATOR,
    "order": Role.INITIATOR,
    "payment": Role.STEP,
    "stock": Role.STEP,
}


def run(*arguments: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(arguments), env={"COLUMNS": "400", **env})
    text = re.sub(r"[│╭╮╰╯─\s]+", " ", result.output)
    return result.exit_code, text


def known(message: str) -> set[str]:
    """The services a refusal names as known (other installed packages may add theirs, as the
    travel example does)."""
    found = re.search(r"known: ([^)]*)\)", message)
    assert found is not None, message
    return set(found.group(1).split(", "))


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def revisions(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {r for (r,) in connection.execute("SELECT version_num FROM alembic_version")}


@pytest.fixture(autouse=True)
def no_configured_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registration.STEPS_VARIABLE, raising=False)


# -- the reference services, through their entry points ---------------------------------------


def test_the_reference_services_are_entry_points_of_the_installed_metadata() -> None:
    declared = {entry.name: entry.value for entry in entry_points(group="sagaline.services")}
    for name in REFERENCE_ROLES:
        assert declared[name] == f"sagaline.services.{name}.plugin:{name.upper()}"
    assert set(registry.SERVICES) <= set(declared)


def test_each_entry_point_loads_the_declaration_of_its_service() -> None:
    plugins = registration.discover()
    for name, role in REFERENCE_ROLES.items():
        plugin = plugins[name]
        assert isinstance(plugin, ServicePlugin)
        assert (plugin.name, plugin.role, plugin.port) == (name, role, registry.PORTS[name])
        assert plugin.migrations is not None
        assert plugin.migrations.name == "migrations"
        assert plugin.migrations.parent.name == name
        assert registry.is_participant(name) is (role is Role.STEP)


def test_the_assembled_handlers_read_their_own_topics() -> None:
    settings = Settings()
    parts = registration.find("payment").assemble(effective_definition(settings), settings)
    assert parts.handler.topics == ["payment", "payment.compensation"]


def test_a_reference_steps_migrations_come_from_its_declaration(tmp_path: Path) -> None:
    database = tmp_path / "payment.db"
    registration.upgrade(registration.find("payment"), f"sqlite+aiosqlite:///{database}")
    assert {"outbox", "inbox", "account", "charge"} <= tables(database)
    assert "payment_0001" in revisions(database)


# -- a step sagaline's files never name -------------------------------------------------------


def test_a_step_is_declared_from_its_participant() -> None:
    plugin = shipping_step.SHIPPING.service_plugin()
    assert (plugin.name, plugin.role, plugin.is_step) == ("shipping", Role.STEP, True)
    assert plugin.version_locations()[-1] == Path(shipping_step.__file__).parent / "migrations"
    assert "shipping" not in registration.discover()


def test_migrate_applies_the_steps_migrations_named_by_step(tmp_path: Path) -> None:
    database = tmp_path / "shipping.db"
    url = f"sqlite+aiosqlite:///{database}"
    code, output = run("migrate", "shipping", "--step", SHIPPING, DATABASE_URL=url)
    assert code == 0, output
    assert "shipping:" in output and "is up to date" in output
    assert {"outbox", "inbox", "test_shipment"} <= tables(database)
    assert "shipping_0001" in revisions(database)
    # the participants' shared table, as for the reference steps
    payment = tmp_path / "payment.db"
    registration.upgrade(registration.find("payment"), f"sqlite+aiosqlite:///{payment}")
    assert tables(payment) - {"account", "charge"} <= tables(database)


def test_migrate_takes_the_step_from_the_setting_too(tmp_path: Path) -> None:
    database = tmp_path / "shipping.db"
    url = f"sqlite+aiosqlite:///{database}"
    code, output = run("migrate", "shipping", DATABASE_URL=url, SAGALINE_STEPS=SHIPPING)
    assert code == 0, output
    assert "test_shipment" in tables(database)
    code, output = run("migrate", "shipping", DATABASE_URL=url, SAGALINE_STEPS=SHIPPING)
    assert code == 0, output  # again: nothing to do


def test_the_steps_app_answers_healthz_and_its_own_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shipping.db'}"
    settings = Settings(database_url=url)
    plugin = registration.find("shipping", [SHIPPING])
    client = TestClient(registration.build_app(plugin, settings))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/shipping/ping").json() == {"shipping": "ok"}
    monkeypatch.setenv(registration.STEPS_VARIABLE, SHIPPING)
    client = TestClient(registry.build_app("shipping", settings))
    assert client.get("/healthz").status_code == 200
    assert registry.is_participant("shipping")


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "relay", "migrate"])
def test_an_unknown_service_is_refused_saying_how_to_register(command: str) -> None:
    code, output = run(command, "shipping")
    assert code == 2
    assert "unknown service 'shipping'" in output
    assert {"orchestrator", "order", "payment", "stock"} <= known(output)
    assert '[project.entry-points."sagaline.services"]' in output
    assert "--step module:object" in output


def test_build_app_refuses_an_unknown_service() -> None:
    with pytest.raises(ValueError, match=r"unknown service 'shipping' \(known: ") as refused:
        registry.build_app("shipping")
    assert {"orchestrator", "order", "payment", "stock"} <= known(str(refused.value))


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("tests.unit.shipping_step", "is not module:object"),
        ("tests.unit.no_such_module:STEP", "cannot import"),
        ("tests.unit.shipping_step:NOTHING", "has no NOTHING"),
        ("tests.unit.shipping_step:ShipCommand", "not a ServicePlugin or a sagaline.sdk.Step"),
    ],
)
def test_a_step_reference_that_does_not_load_is_refused(reference: str, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        registration.find("shipping", [reference])
    code, output = run("migrate", "shipping", "--step", reference)
    assert code == 2 and message in output


def test_a_step_needs_a_command_model_and_both_functions() -> None:
    with pytest.raises(TypeError, match="command must be a pydantic model class"):
        Step("shipping", command=dict)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="does not match"):
        Step("Shipping!", command=shipping_step.ShipCommand)
    half = Step("half", command=shipping_step.ShipCommand)
    half.apply(shipping_step.ship)
    plugin = half.service_plugin()
    with pytest.raises(TypeError, match=r"step half has no undo: decorate one with @step\.undo"):
        plugin.assemble(DEFINITION, Settings())
