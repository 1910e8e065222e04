"""Which services the lab's stack runs for a Saga file, on which ports and databases: the
reference four on the lab's table, any other step on the next free port after them and in
`<step>db`. (Nothing is started: the stack is only configured.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from sagaline.domain.definition import load_definition
from sagaline.lab import ports
from sagaline.lab.databases import database_urls
from sagaline.lab.stack import Stack, StackConfig, StackError
from sagaline.services.registry import DATABASES, PORTS, SERVICES, database_name, services_of

ORDER_YAML = Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml"


def saga_file(directory: Path, *steps: str, initiator: str = "order") -> Path:
    document = yaml.safe_load(ORDER_YAML.read_text())
    document["spec"]["initiator"]["name"] = initiator
    document["spec"]["steps"] += [{"name": step} for step in steps]
    path = directory / "saga.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_services_of_a_saga_are_the_orchestrator_the_initiator_and_its_steps(tmp_path):
    assert services_of(load_definition(ORDER_YAML)) == list(SERVICES)
    definition = load_definition(saga_file(tmp_path, "shipping", "invoice"))
    assert services_of(definition) == [*SERVICES, "shipping", "invoice"]


def test_a_saga_without_an_initiator_runs_no_initiator(tmp_path):
    document = yaml.safe_load(ORDER_YAML.read_text())
    document["spec"]["initiator"] = {"enabled": False}
    path = tmp_path / "saga.yaml"
    path.write_text(yaml.safe_dump(document))
    assert services_of(load_definition(path)) == ["orchestrator", "payment", "stock"]


def test_the_reference_four_keep_their_databases_and_another_step_gets_its_own():
    assert {service: database_name(service) for service in SERVICES} == DATABASES
    assert database_name("shipping") == "shippingdb"
    urls = database_urls(None, Path("/state"), services=[*SERVICES, "shipping"])
    assert urls["shipping"] == "sqlite:////state/shippingdb.db"
    assert urls["payment"] == "sqlite:////state/paymentdb.db"
    server = database_urls("postgresql://u:p@db:5432/x", Path("/s"), prefix="t1_", services=["a"])
    assert server == {"a": "postgresql://u:p@db:5432/t1_adb"}


def test_a_stack_gives_another_step_the_next_free_port_after_the_four(tmp_path):
    stack = Stack(StackConfig(state_dir=tmp_path, saga_file=saga_file(tmp_path, "shipping")))
    assert stack.services == [*SERVICES, "shipping"]
    assert {service: stack.config.ports[service] for service in SERVICES} == PORTS
    highest = max(PORTS.values())
    assert stack.config.ports["shipping"] == ports.next_free_port(highest, set(PORTS.values()))
    assert stack.config.ports["shipping"] > highest
    assert stack.urls["shipping"] == f"sqlite:///{tmp_path.resolve() / 'shippingdb'}.db"


def test_the_next_free_port_skips_those_taken_and_those_listened_on():
    with socket.socket() as listener:
        listener.bind(("", 0))
        busy = listener.getsockname()[1]
        assert ports.next_free_port(busy - 1, set()) != busy
        assert ports.next_free_port(busy - 3, {busy - 2, busy - 1}) > busy


def test_a_saga_file_that_does_not_load_is_a_stack_error(tmp_path):
    bad = tmp_path / "saga.yaml"
    bad.write_text("kind: Saga\n")
    with pytest.raises(StackError, match="invalid saga definition"):
        Stack(StackConfig(state_dir=tmp_path, saga_file=bad))


def renamed_saga(directory: Path, name: str, **initiator: object) -> Path:
    """A copy of the order saga under another name (the same steps)."""
    document = yaml.safe_load(ORDER_YAML.read_text())
    document["metadata"]["name"] = name
    document["spec"]["initiator"].update(initiator)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_two_sagas_run_side_by_side_each_service_on_its_own_port_and_database(tmp_path):
    order2 = renamed_saga(tmp_path, "order2")
    config = StackConfig(state_dir=tmp_path, saga_file=ORDER_YAML, more_saga_files=[order2])
    config.bootstrap_servers = "127.0.0.1:9092"  # given: the environment names it
    stack = Stack(config)
    twins = ["order2-orchestrator", "order2-order", "order2-payment", "order2-stock"]
    assert stack.services == [*SERVICES, *twins]
    assert {service: stack.config.ports[service] for service in SERVICES} == PORTS
    taken = [stack.config.ports[name] for name in stack.services]
    assert len(set(taken)) == len(taken)
    assert min(stack.config.ports[name] for name in twins) > max(PORTS.values())
    state = tmp_path.resolve()
    assert stack.urls["payment"] == f"sqlite:///{state / 'paymentdb'}.db"
    assert stack.urls["order2-payment"] == f"sqlite:///{state / 'order2_paymentdb'}.db"
    assert stack.urls["order2-orchestrator"] == f"sqlite:///{state / 'order2_orchestratordb'}.db"
    assert len(set(stack.urls.values())) == 8
    assert stack.environment("payment")["SAGA_FILE"] == str(ORDER_YAML)
    assert stack.environment("order2-payment")["SAGA_FILE"] == str(order2.resolve())
    assert stack.environment("order2-payment")["DATABASE_URL"] == stack.urls["order2-payment"]


def test_a_saga_without_an_initiator_beside_the_order_saga_runs_none(tmp_path):
    solo = renamed_saga(tmp_path, "solo", enabled=False)
    stack = Stack(StackConfig(state_dir=tmp_path, saga_file=ORDER_YAML, more_saga_files=[solo]))
    assert stack.services == [*SERVICES, "solo-orchestrator", "solo-payment", "solo-stock"]


def test_two_saga_files_of_one_name_are_refused(tmp_path):
    copy = tmp_path / "copy.yaml"
    copy.write_text(ORDER_YAML.read_text())
    with pytest.raises(StackError, match="both define the Saga 'order'"):
        Stack(StackConfig(state_dir=tmp_path, saga_file=ORDER_YAML, more_saga_files=[copy]))
