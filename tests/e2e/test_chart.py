"""The operator's chart with the real helm: lint and template clean, and every object it renders
(with the optional ones on, namespaced or cluster-wide) accepted by the real API server's
server-side dry run (its schemas, defaults, admission).

The chart renders no ServiceMonitor (the operator serves no metrics, values.yaml says why); the
session still installs a stand-in ServiceMonitor CRD (tests/e2e/crds/servicemonitor.yaml), so one
would be dry-run like the rest if the chart rendered it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e.support import CHART, Body, Cluster

CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"}
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "optional-objects": [
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "networkPolicy.apiServerCIDRs={10.0.0.1/32}",
    ],
    "clusterwide": ["--set", "watch.clusterwide=true"],
    "watched-namespaces": ["--set", "watch.namespaces={NS-a,NS-b}"],
}


def test_helm_lint_is_clean(cluster: Cluster) -> None:
    result = cluster.helm("lint", "--strict", str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "[WARNING]" in line or "[ERROR]" in line
    ]
    assert problems == [], result.stdout


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:6]}"
    for suffix in ("", "-a", "-b"):
        cluster.kubectl("create", "namespace", f"{name}{suffix}")
    yield name
    for suffix in ("", "-a", "-b"):
        cluster.kubectl("delete", "namespace", f"{name}{suffix}", "--wait=false")


def rendered(cluster: Cluster, namespace: str, arguments: list[str]) -> list[Body]:
    result = cluster.helm(
        "template",
        "sagaline-operator",
        str(CHART),
        "-n",
        namespace,
        "--include-crds",
        *arguments,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_passes_the_api_servers_dry_run(
    cluster: Cluster, namespace: str, variant: str
) -> None:
    arguments = [argument.replace("NS", namespace) for argument in VARIANTS[variant]]
    documents = rendered(cluster, namespace, arguments)
    kinds = {document["kind"] for document in documents}
    assert {"CustomResourceDefinition", "ServiceAccount", "Deployment"} <= kinds
    assert kinds & {"Role", "ClusterRole"}
    if variant == "optional-objects":
        assert {"NetworkPolicy", "PodDisruptionBudget"} <= kinds
    for document in documents:  # what helm install does: the release namespace by default
        if document["kind"] not in CLUSTER_SCOPED:
            document["metadata"].setdefault("namespace", namespace)
    text = yaml.safe_dump_all(documents)
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--field-manager=helm",
        "-f",
        "-",
        input=text,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(documents), result.stdout


def test_the_values_schema_refuses_a_bad_value_before_the_api_server(cluster: Cluster) -> None:
    result = cluster.helm(
        "template", "x", str(CHART), "--set", "operator.healthPort=not-a-port", check=False
    )
    assert result.returncode != 0
    assert "healthPort" in result.stderr
