"""The Saga CRD: valid itself, accepts k8s/sagas/order.yaml, refuses bad specs, and says what
the model the services load says (fields, defaults, bounds)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from sagaline.domain.definition import REFERENCE_PATTERN, SagaSpec
from tests.operator.support import CRD_YAML, order_saga

CRD = yaml.safe_load(CRD_YAML.read_text())
(VERSION,) = CRD["spec"]["versions"]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]


def strict(schema: Any) -> Any:
    """The schema as the API server applies it under strict field validation (kubectl's
    default): an unknown field is an error. (A structural schema may not say
    `additionalProperties: false` itself; the server prunes or refuses unknown fields.)"""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


# OpenAPI v3.0 schemas use draft 4's boolean exclusiveMinimum.
VALIDATOR = jsonschema.Draft4Validator(strict(SCHEMA))


def errors(document: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(document)]


def test_the_crd_is_a_valid_custom_resource_definition():
    kubernetes_validate.validate(CRD, "1.30", strict=True)
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    assert CRD["metadata"]["name"] == "sagas.sagaline.io"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert VERSION["name"] == "v1alpha1"
    assert VERSION["subresources"] == {"status": {}}


def test_the_printer_columns_are_those_of_kubectl_get_sagas():
    names = [column["name"].upper() for column in VERSION["additionalPrinterColumns"]]
    assert names == [
        "EXECUTION",
        "STEPS",
        "TOPICS",
        "READY",
        "RUNNING",
        "COMPLETED",
        "COMPENSATED",
        "FAILED",
        "STUCK",
        "AGE",
    ]
    status = SCHEMA["properties"]["status"]["properties"]
    for column in VERSION["additionalPrinterColumns"]:
        path = column["jsonPath"].split("[")[0].strip(".").split(".")
        if path[0] == "status":  # every status column names a declared status field
            node = status
            for part in path[1:]:
                node = node[part].get("properties", node[part])


def test_order_yaml_passes_the_crd_schema():
    assert errors(order_saga()) == []


def test_a_minimal_saga_passes():
    minimal = {
        "apiVersion": "sagaline.io/v1alpha1",
        "kind": "Saga",
        "metadata": {"name": "mini"},
        "spec": {"steps": [{"name": "payment", "database": {"secretName": "payment-db"}}]},
    }
    assert errors(minimal) == []


def test_a_saga_without_an_initiator_passes_and_its_flag_defaults_to_true():
    document = order_saga()
    document["spec"]["initiator"] = {"enabled": False}
    assert errors(document) == []
    initiator = SCHEMA["properties"]["spec"]["properties"]["initiator"]
    assert initiator["properties"]["enabled"] == {
        "type": "boolean",
        "description": initiator["properties"]["enabled"]["description"],
        "default": True,
    }
    (rule,) = SCHEMA["properties"]["spec"]["x-kubernetes-validations"]
    assert "self.initiator.enabled &&" in rule["rule"]


def test_a_step_with_its_own_image_command_and_timing_passes():
    document = order_saga()
    document["spec"]["steps"][0].update(
        image="registry.example/payments/step:1.4",
        command=["payments-step"],
        args=["--log-level", "debug"],
        timeoutSeconds=2.5,
        maxAttempts=100,
        compensationMaxAttempts=1000,
    )
    document["spec"]["steps"][1].update(timeoutSeconds=3600, maxAttempts=1)
    assert errors(document) == []
    assert SagaSpec.model_validate(document["spec"]).steps[0].timeout_seconds == 2.5


def test_a_step_naming_its_declaration_passes():
    document = order_saga()
    document["spec"]["steps"].append(
        {
            "name": "shipping",
            "declaration": "shipping_team.plugin:SHIPPING",
            "database": {"secretName": "shipping-db"},
        }
    )
    assert errors(document) == []
    spec = SagaSpec.model_validate(document["spec"])
    assert spec.step("shipping").declaration == "shipping_team.plugin:SHIPPING"


def test_the_crds_declaration_pattern_is_the_models():
    step = SCHEMA["properties"]["spec"]["properties"]["steps"]["items"]["properties"]
    assert step["declaration"]["pattern"] == REFERENCE_PATTERN


def test_a_steps_bounds_and_descriptions_are_the_sagas():
    spec = SCHEMA["properties"]["spec"]["properties"]
    step = spec["steps"]["items"]["properties"]
    for saga_field, step_field in (
        ("stepTimeoutSeconds", "timeoutSeconds"),
        ("maxAttempts", "maxAttempts"),
        ("compensationMaxAttempts", "compensationMaxAttempts"),
    ):
        bounds = {k: v for k, v in spec[saga_field].items() if k not in ("description", "default")}
        assert {k: v for k, v in step[step_field].items() if k != "description"} == bounds
        assert "default" not in step[step_field]  # unset: the Saga's
        description = " ".join(step[step_field]["description"].split())
        assert f"unset: the Saga's {saga_field}" in description


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.update(execution="random"), "execution"),
        (lambda s: s.update(stepTimeoutSeconds=0), "stepTimeoutSeconds"),
        (lambda s: s.update(stepTimeoutSeconds=3601), "stepTimeoutSeconds"),
        (lambda s: s.update(maxAttempts=0), "maxAttempts"),
        (lambda s: s.update(maxAttempts="5"), "maxAttempts"),
        (lambda s: s.update(steps=[]), "steps"),
        (lambda s: s.update(steps=[{"name": f"s{i}"} for i in range(21)]), "steps"),
        (lambda s: s["steps"].append({"name": "Bad_Name"}), "steps.2.name"),
        (lambda s: s["steps"].append({"replicas": 1}), "steps.2"),
        (lambda s: s["steps"][0].update(replicas=-1), "steps.0.replicas"),
        (lambda s: s["kafka"].update(partitions=0), "kafka.partitions"),
        (lambda s: s["kafka"].update(replicas=11), "kafka.replicas"),
        (lambda s: s["kafka"].update(retentionMs=1000), "kafka.retentionMs"),
        (lambda s: s["kafka"].update(cluster="Not A Name"), "kafka.cluster"),
        (lambda s: s.update(topicDeletionPolicy="purge"), "topicDeletionPolicy"),
        (lambda s: s["orchestrator"].update(database={}), "orchestrator.database"),
        (lambda s: s["initiator"]["database"].update(secretName="UPPER"), "secretName"),
        (lambda s: s.update(retries=3), "spec"),
        (lambda s: s.pop("steps"), "spec"),
        (lambda s: s["steps"][0].update(timeoutSeconds=0), "steps.0.timeoutSeconds"),
        (lambda s: s["steps"][0].update(timeoutSeconds=3601), "steps.0.timeoutSeconds"),
        (lambda s: s["steps"][0].update(maxAttempts=0), "steps.0.maxAttempts"),
        (lambda s: s["steps"][0].update(maxAttempts=101), "steps.0.maxAttempts"),
        (lambda s: s["steps"][0].update(maxAttempts=2.5), "steps.0.maxAttempts"),
        (
            lambda s: s["steps"][1].update(compensationMaxAttempts=0),
            "steps.1.compensationMaxAttempts",
        ),
        (
            lambda s: s["steps"][1].update(compensationMaxAttempts=1001),
            "steps.1.compensationMaxAttempts",
        ),
        (lambda s: s["steps"][0].update(image=""), "steps.0.image"),
        (lambda s: s["steps"][0].update(command=[]), "steps.0.command"),
        (lambda s: s["steps"][0].update(command="payments-step"), "steps.0.command"),
        (lambda s: s["steps"][0].update(args=[1]), "steps.0.args.0"),
        (lambda s: s["steps"][0].update(timeout=5), "steps.0"),
        (lambda s: s["steps"][0].update(declaration="not-a-reference"), "steps.0.declaration"),
        (lambda s: s["steps"][0].update(declaration="my_pkg.plugin"), "steps.0.declaration"),
        (lambda s: s["steps"][0].update(declaration="a:b,c:d"), "steps.0.declaration"),
        (lambda s: s["steps"][0].update(declaration=""), "steps.0.declaration"),
    ],
)
def test_bad_specs_are_refused_by_the_schema(change, field):
    document = order_saga()
    change(document["spec"])
    problems = errors(document)
    assert problems, "the schema accepted a bad spec"
    assert any(field in problem for problem in problems), problems


def test_what_the_schema_cannot_check_is_written_as_rules_for_the_api_server():
    """Duplicate step names: a list keyed by name. A step named like a service: a CEL rule.
    (jsonschema does not run either; the operator refuses both too, see test_operator.)"""
    steps = SCHEMA["properties"]["spec"]["properties"]["steps"]
    assert steps["x-kubernetes-list-type"] == "map"
    assert steps["x-kubernetes-list-map-keys"] == ["name"]
    rules = SCHEMA["properties"]["spec"]["x-kubernetes-validations"]
    assert any("orchestrator" in rule["rule"] for rule in rules)


# -- the CRD says what the model says ----------------------------------------------------------


def model_fields(model: type[BaseModel]) -> dict[str, Any]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


def walk(model: type[BaseModel], schema: dict, where: str = "spec") -> list[str]:
    """Differences between a pydantic model and a CRD schema: names, defaults, bounds."""
    problems = []
    fields, properties = model_fields(model), schema["properties"]
    if set(fields) != set(properties):
        problems.append(f"{where}: model {sorted(fields)} != crd {sorted(properties)}")
    for name in set(fields) & set(properties):
        field, prop = fields[name], properties[name]
        annotation = field.annotation
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        models = [a for a in nested if issubclass(a, BaseModel)]
        if getattr(annotation, "__origin__", None) is list:
            models = [annotation.__args__[0]]
            prop = prop["items"]
        if models:
            problems += walk(models[0], prop, f"{where}.{name}")
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if default is not None and prop.get("default") != default:
            problems.append(f"{where}.{name}: default {default!r} != {prop.get('default')!r}")
        for meta in field.metadata:
            for attr, key in (("ge", "minimum"), ("le", "maximum"), ("gt", "minimum")):
                if hasattr(meta, attr) and prop.get(key) != getattr(meta, attr):
                    problems.append(f"{where}.{name}: {attr} {getattr(meta, attr)} != {key}")
            if hasattr(meta, "pattern") and prop.get("pattern") != meta.pattern:
                problems.append(f"{where}.{name}: pattern differs")
        if field.is_required() and name not in schema.get("required", []):
            problems.append(f"{where}.{name}: required in the model, not in the crd")
    return problems


def test_the_crd_and_the_saga_model_agree():
    spec = SCHEMA["properties"]["spec"]
    assert walk(SagaSpec, spec) == []
    assert spec["properties"]["execution"]["enum"] == ["sequential", "parallel"]
    assert spec["properties"]["topicDeletionPolicy"]["enum"] == ["retain", "delete"]


def test_the_crd_defaults_give_the_models_defaults():
    """What the API server stores for a minimal Saga is what the services would assume."""
    spec = SCHEMA["properties"]["spec"]["properties"]
    for section in ("kafka", "orchestrator", "initiator"):
        assert spec[section]["default"] == {}
    document = copy.deepcopy(order_saga())
    assert SagaSpec.model_validate(document["spec"]).kafka.partitions == 6
