"""The `Saga` resource: loading, validation, topics and overrides."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sagaline.domain.definition import (
    Execution,
    SagaDefinition,
    default_definition_path,
    load_definition,
)

ORDER_YAML = Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml"

EXPECTED_TOPICS = [
    "orchestrator",
    "orchestrator.response",
    "orchestrator.dlt",
    "payment",
    "payment.success",
    "payment.dlt",
    "payment.compensation",
    "stock",
    "stock.success",
    "stock.dlt",
    "stock.compensation",
]


@pytest.fixture(scope="module")
def order_document() -> dict:
    return yaml.safe_load(ORDER_YAML.read_text())


def write(tmp_path: Path, document, name: str = "saga.yaml") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def with_steps(document: dict, *names: str) -> dict:
    document = copy.deepcopy(document)
    document["spec"]["steps"] = [{"name": name} for name in names]
    return document


# -- the reference definition ------------------------------------------------------------------


def test_order_yaml_gives_the_eleven_topics_in_order():
    definition = load_definition(ORDER_YAML)
    assert definition.topics() == EXPECTED_TOPICS
    assert len(set(definition.topics())) == 11


def test_order_yaml_fields():
    definition = load_definition(str(ORDER_YAML))  # a str path works too
    assert definition.name == "order"
    assert definition.step_names == ["payment", "stock"]
    spec = definition.spec
    assert spec.execution is Execution.SEQUENTIAL
    assert spec.step_timeout_seconds == 10
    assert spec.max_attempts == 5
    assert spec.kafka.partitions == 6
    assert spec.kafka.replicas == 3
    assert spec.initiator.name == "order"
    assert spec.steps[0].database.secret_name == "payment-db"
    assert spec.topic_deletion_policy == "retain"


def test_topics_of_three_steps(tmp_path, order_document):
    definition = load_definition(
        write(tmp_path, with_steps(order_document, "payment", "stock", "shipping"))
    )
    topics = definition.topics()
    assert len(topics) == 3 + 4 * 3
    assert topics[:3] == ["orchestrator", "orchestrator.response", "orchestrator.dlt"]
    assert topics[-4:] == ["shipping", "shipping.success", "shipping.dlt", "shipping.compensation"]


def test_minimal_document_gets_the_defaults(tmp_path):
    document = {
        "apiVersion": "sagaline.io/v1alpha1",
        "kind": "Saga",
        "metadata": {"name": "mini"},
        "spec": {"steps": [{"name": "payment"}]},
    }
    definition = load_definition(write(tmp_path, document))
    assert definition.spec.execution is Execution.SEQUENTIAL
    assert definition.spec.max_attempts == 5
    assert definition.topics() == [
        "mini.orchestrator",
        "mini.orchestrator.response",
        "mini.orchestrator.dlt",
        "mini.payment",
        "mini.payment.success",
        "mini.payment.dlt",
        "mini.payment.compensation",
    ]


def test_default_definition_path_points_to_the_order_saga(tmp_path, monkeypatch):
    assert default_definition_path().resolve() == ORDER_YAML
    monkeypatch.chdir(tmp_path)  # no k8s/ here: falls back to the source checkout
    assert default_definition_path().resolve() == ORDER_YAML


# -- refusals ----------------------------------------------------------------------------------


def test_duplicate_step_names_are_refused_naming_the_step(tmp_path, order_document):
    path = write(tmp_path, with_steps(order_document, "payment", "stock", "payment"))
    with pytest.raises(ValueError) as info:
        load_definition(path)
    message = str(info.value)
    assert "repeated: payment" in message
    assert "stock" not in message.split("repeated:")[1].splitlines()[0]
    assert str(path) in message


def test_duplicate_step_names_refused_by_the_model(order_document):
    with pytest.raises(ValidationError, match="repeated: stock"):
        SagaDefinition.model_validate(with_steps(order_document, "stock", "payment", "stock"))


@pytest.mark.parametrize("name", ["orchestrator", "order"])
def test_a_step_named_like_a_service_is_refused(tmp_path, order_document, name):
    path = write(tmp_path, with_steps(order_document, "payment", name))
    with pytest.raises(ValueError, match=f"named like a service: {name}") as info:
        load_definition(path)
    assert str(path) in str(info.value)


def test_missing_file_gives_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "nowhere" / "saga.yaml"
    with pytest.raises(ValueError, match="cannot read saga definition") as info:
        load_definition(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["spec"].update(maxAttempts=0), "maxAttempts"),
        (lambda d: d["spec"].update(stepTimeoutSeconds=-1), "stepTimeoutSeconds"),
        (lambda d: d["spec"].update(execution="random"), "execution"),
        (lambda d: d["spec"].update(retries=3), "retries"),
        (lambda d: d["spec"]["steps"].append({"name": "Bad_Name"}), "name"),
        (lambda d: d["spec"].update(steps=[]), "steps"),
        (lambda d: d["spec"]["kafka"].update(partitions=0), "partitions"),
        (lambda d: d.update(kind="Pipeline"), "kind"),
        (lambda d: d.pop("metadata"), "metadata"),
    ],
    ids=[
        "maxAttempts",
        "timeout",
        "execution",
        "extra",
        "step-name",
        "no-steps",
        "partitions",
        "kind",
        "metadata",
    ],
)
def test_invalid_field_gives_a_value_error_naming_file_and_field(
    tmp_path, order_document, edit, field
):
    document = copy.deepcopy(order_document)
    edit(document)
    path = write(tmp_path, document)
    with pytest.raises(ValueError, match="invalid saga definition") as info:
        load_definition(path)
    assert str(path) in str(info.value)
    assert field in str(info.value)


@pytest.mark.parametrize("text", ["", "just a string\n", "- a\n- list\n"])
def test_a_document_that_is_not_a_saga_gives_a_value_error(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="invalid saga definition") as info:
        load_definition(path)
    assert str(path) in str(info.value)


def test_malformed_yaml_gives_a_value_error_naming_the_file(tmp_path):
    path = write(tmp_path, "spec: [unclosed\n")
    with pytest.raises(ValueError) as info:
        load_definition(path)
    assert str(path) in str(info.value)


# -- overrides ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [Execution.PARALLEL, "parallel"])
def test_with_execution_overrides_without_touching_the_original(value):
    original = load_definition(ORDER_YAML)
    parallel = original.with_execution(value)
    assert parallel.spec.execution is Execution.PARALLEL
    assert original.spec.execution is Execution.SEQUENTIAL
    assert parallel.topics() == original.topics()
    assert parallel.spec.max_attempts == original.spec.max_attempts
    assert parallel.name == "order"
    assert parallel.with_execution("sequential").spec.execution is Execution.SEQUENTIAL


def test_with_execution_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="bogus"):
        load_definition(ORDER_YAML).with_execution("bogus")


def test_with_timing_overrides_without_touching_the_original():
    original = load_definition(ORDER_YAML).with_execution("parallel")
    fast = original.with_timing(0.5, 2)
    assert fast.spec.step_timeout_seconds == 0.5
    assert fast.spec.max_attempts == 2
    assert fast.spec.execution is Execution.PARALLEL
    assert fast.step_names == ["payment", "stock"]
    assert (original.spec.step_timeout_seconds, original.spec.max_attempts) == (10, 5)


def test_with_timing_refuses_values_the_spec_forbids():
    definition = load_definition(ORDER_YAML)
    with pytest.raises(ValueError):
        definition.with_timing(0, 0)


# -- a step's declaration ------------------------------------------------------------------------

SHIPPING = "tests.unit.shipping_step:SHIPPING"


def test_a_step_may_name_its_declaration(order_document):
    document = copy.deepcopy(order_document)
    document["spec"]["steps"].append({"name": "shipping", "declaration": SHIPPING})
    definition = SagaDefinition.model_validate(document)
    assert definition.spec.step("shipping").declaration == SHIPPING
    assert definition.spec.step("payment").declaration is None  # found by its entry point
    assert definition.model_dump(by_alias=True)["spec"]["steps"][2]["declaration"] == SHIPPING


@pytest.mark.parametrize(
    "reference",
    ["not-a-reference", "tests.unit.shipping_step", ":SHIPPING", "a:", "a:b,c:d", "a b:c", ""],
)
def test_a_declaration_that_is_not_module_object_is_refused(order_document, reference):
    document = copy.deepcopy(order_document)
    document["spec"]["steps"][0]["declaration"] = reference
    with pytest.raises(ValidationError, match="declaration"):
        SagaDefinition.model_validate(document)


# -- a Saga without an initiator ---------------------------------------------------------------


def test_a_saga_that_leaves_out_its_initiator_keeps_the_order_service(tmp_path, order_document):
    document = copy.deepcopy(order_document)
    del document["spec"]["initiator"]
    spec = load_definition(write(tmp_path, document)).spec
    assert spec.initiator.enabled is True
    assert spec.initiator_name == "order"


def test_a_saga_may_have_no_initiator(tmp_path, order_document):
    document = copy.deepcopy(order_document)
    document["spec"]["initiator"] = {"enabled": False}
    document["spec"]["steps"].append({"name": "order"})  # the name is then free for a step
    definition = load_definition(write(tmp_path, document))
    assert definition.spec.initiator_name is None
    assert definition.topics()[:3] == ["orchestrator", "orchestrator.response", "orchestrator.dlt"]


def test_a_null_initiator_is_refused_saying_how_to_have_none(tmp_path, order_document):
    document = copy.deepcopy(order_document)
    document["spec"]["initiator"] = None
    with pytest.raises(ValueError, match=r"initiator: \{enabled: false\}"):
        load_definition(write(tmp_path, document))


def test_a_step_named_like_an_enabled_initiator_is_refused(tmp_path, order_document):
    document = copy.deepcopy(order_document)
    document["spec"]["steps"].append({"name": "order"})
    with pytest.raises(ValueError, match="named like a service: order"):
        load_definition(write(tmp_path, document))
