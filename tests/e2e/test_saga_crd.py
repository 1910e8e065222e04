"""The Saga CRD, installed by the chart, on the real API server: k8s/sagas/order.yaml accepted
(with the schema's defaults filled in), every bad spec of the operator's unit tests refused by the
server's schema, and what only the server checks refused too (the list keyed by step name, the
CEL rules). Server-side dry runs: nothing is stored."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.e2e.support import SAGA_FILE, Body, Cluster, load_yaml
from tests.operator import test_crd


def _bad_specs() -> list[tuple[Callable[[Body], Any], str]]:
    """The (change, field) cases of tests/operator/test_crd.py, which checks them with
    jsonschema offline: here the real API server judges the same ones."""
    for mark in test_crd.test_bad_specs_are_refused_by_the_schema.pytestmark:
        if mark.name == "parametrize":
            cases: list[tuple[Callable[[Body], Any], str]] = list(mark.args[1])
            return cases
    raise AssertionError("tests/operator/test_crd.py lost its bad specs")


BAD_SPECS = _bad_specs()


def api_path(field: str) -> str:
    """jsonschema's `steps.2.name` as the API server says it: `steps[2].name`."""
    if field == "spec":
        return "spec"
    return "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in field.split(".")).lstrip(".")


def dry_run(cluster: Cluster, namespace: str, document: Body) -> tuple[int, str, str]:
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=yaml.safe_dump(document),
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_order_yaml_is_accepted_with_the_schemas_defaults(cluster: Cluster, installed: str) -> None:
    code, out, err = dry_run(cluster, installed, load_yaml(SAGA_FILE))
    assert code == 0, err
    saga = json.loads(out)
    assert saga["spec"]["topicDeletionPolicy"] == "retain"  # a default the server filled in
    assert saga["spec"]["kafka"]["retentionMs"] == 604800000


@pytest.mark.parametrize(
    ("case", "field"), [(i, field) for i, (_, field) in enumerate(BAD_SPECS)], ids=str
)
def test_a_bad_spec_is_refused_by_the_api_server(
    cluster: Cluster, installed: str, case: int, field: str
) -> None:
    change, _ = BAD_SPECS[case]
    document = copy.deepcopy(load_yaml(SAGA_FILE))
    change(document["spec"])
    code, _, err = dry_run(cluster, installed, document)
    assert code != 0, f"the API server accepted a spec with a bad {field}"
    assert api_path(field) in err, err


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            lambda spec: spec["steps"].append(dict(spec["steps"][0])),
            "Duplicate value",
        ),
        (
            lambda spec: spec["steps"].append(
                {"name": "orchestrator", "database": {"secretName": "x-db"}}
            ),
            "may not be named like a service",
        ),
        (
            lambda spec: spec["steps"].append(
                {"name": spec["initiator"]["name"], "database": {"secretName": "x-db"}}
            ),
            "may not be named like a service",
        ),
        (
            lambda spec: spec["kafka"].update(replicas=2, minInsyncReplicas=3),
            "minInsyncReplicas cannot exceed replicas",
        ),
        (
            lambda spec: spec["kafka"].update(authentication={"type": "tls"}),
            "needs kafka.tls",
        ),
    ],
    ids=["duplicate-step", "step-named-orchestrator", "step-named-initiator", "insync", "tls"],
)
def test_what_only_the_api_server_checks_is_refused(
    cluster: Cluster, installed: str, change: Callable[[Body], Any], said: str
) -> None:
    document = copy.deepcopy(load_yaml(SAGA_FILE))
    change(document["spec"])
    code, _, err = dry_run(cluster, installed, document)
    assert code != 0, "the API server accepted it"
    assert said in err, err


def test_without_an_initiator_a_step_may_take_its_name(cluster: Cluster, installed: str) -> None:
    document = copy.deepcopy(load_yaml(SAGA_FILE))
    document["spec"]["initiator"] = {"enabled": False}
    document["spec"]["steps"].append({"name": "order", "database": {"secretName": "x-db"}})
    code, out, err = dry_run(cluster, installed, document)
    assert code == 0, err
    initiator = json.loads(out)["spec"]["initiator"]
    assert (initiator["enabled"], initiator["name"]) == (False, "order")


def test_a_null_initiator_comes_back_as_the_order_service(cluster: Cluster, installed: str) -> None:
    """Why `initiator: {enabled: false}` and not `initiator: null` (docs/design.md, "The Saga
    resource"): the API server prunes the null and applies the default."""
    document = copy.deepcopy(load_yaml(SAGA_FILE))
    document["spec"]["initiator"] = None
    result = cluster.kubectl(
        "create", "--dry-run=server", "-n", installed, "-o", "json", "-f", "-",
        input=json.dumps(document),
    )  # fmt: skip
    initiator = json.loads(result.stdout)["spec"]["initiator"]
    assert (initiator["enabled"], initiator["name"]) == (True, "order")
