"""The operator's Helm chart (charts/sagaline-operator), rendered offline with helm_python: lint
clean, every object valid for Kubernetes 1.30 and later, RBAC exactly what the operator needs,
values refused by the schema, and one CRD shared with operator/crds/.

One module past 400 lines on purpose: the one chart, rendered once and read from every side."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from sagaline_operator import manifests

from sagaline.domain.definition import default_definition_path, load_definition

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sagaline-operator"
OPERATOR_CRD = ROOT / "operator" / "crds" / "saga.yaml"
RELEASE = "sagaline-operator"
NAMESPACE = "sagaline"
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())

Obj = dict[str, Any]

# What the operator may do in a watched namespace: exactly this (apiGroup, resource, verb).
VERBS_ALL = ("get", "list", "watch", "create", "patch", "delete")
RULES: set[tuple[str, str, str]] = {
    *(("sagaline.io", "sagas", verb) for verb in ("get", "list", "watch", "patch")),
    *(("sagaline.io", "sagas/status", verb) for verb in ("get", "patch")),
    *(("kafka.strimzi.io", r, v) for r in ("kafkatopics", "kafkausers") for v in VERBS_ALL),
    *(("apps", "deployments", verb) for verb in VERBS_ALL),
    *(("", r, v) for r in ("configmaps", "services") for v in VERBS_ALL),
    *(("policy", "poddisruptionbudgets", verb) for verb in VERBS_ALL),
    *((group, "events", verb) for group in ("", "events.k8s.io") for verb in ("create", "patch")),
}
CLUSTERWIDE_RULES = RULES | {
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}

# Every optional feature on, watching two namespaces.
ALL_ON: Obj = {
    "image": {"repository": "ghcr.io/acme/sagaline", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"iam.example.com/role": "sagaline"}},
    "watch": {"namespaces": ["shop", "billing"]},
    "operator": {
        "strimziApiVersion": "kafka.strimzi.io/v1",
        "resyncIntervalSeconds": 60,
        "countsIntervalSeconds": 2.5,
        "extraEnv": [{"name": "SAGALINE_OPERATOR_SUMMARY_TIMEOUT_S", "value": "3"}],
    },
    "podAnnotations": {"example.com/team": "payments"},
    "podLabels": {"example.com/tier": "control"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "control", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }
                ]
            }
        }
    },
    "networkPolicy": {
        "enabled": True,
        "apiServerCIDRs": ["10.96.0.1/32", "172.18.0.2/32"],
        "healthFrom": [{"namespaceSelector": {}}],
    },
    "podDisruptionBudget": {"enabled": True},
    "monitoring": {"podMonitor": {"enabled": True, "labels": {"release": "kps"}}},
}
# Kinds of the Prometheus Operator's CRDs: not in Kubernetes' own schemas.
CUSTOM_KINDS = {"PodMonitor"}
CLUSTERWIDE: Obj = {**ALL_ON, "watch": {"clusterwide": True}}
BRING_YOUR_OWN: Obj = {
    "rbac": {"create": False},
    "serviceAccount": {"create": False, "name": "ops"},
}
VALUE_SETS = {"defaults": {}, "all-on": ALL_ON, "clusterwide": CLUSTERWIDE, "byo": BRING_YOUR_OWN}


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: Obj) -> list[Obj]:
    """The rendered templates' objects (NOTES.txt aside), then the CRDs of crds/."""
    rendered = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)
    objects = [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    for crd in chart.crds:
        objects += [doc for doc in yaml.safe_load_all(crd["data"]) if doc]
    return objects


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Obj], kind: str) -> Obj:
    (found,) = of_kind(objects, kind)
    return found


def triples(role: Obj) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def env_of(deployment: Obj) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


# -- lint and validity -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_is_clean(values: Obj) -> None:
    for kube_version in ("v1.29.0", "v1.30.0"):
        report = helm_python.lint(CHART, values, strict=True, kube_version=kube_version)
        assert report["errors"] == []
        # Info only (Helm recommends an icon); no warning, no error.
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_is_valid_for_kubernetes_1_30_and_later(chart: Any, values: Obj) -> None:
    objects = render(chart, values)
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:  # checked by its own test
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"], obj["metadata"]["name"]


def test_defaults_install_what_the_operator_needs(chart: Any) -> None:
    kinds = sorted(obj["kind"] for obj in render(chart, {}))
    assert kinds == [
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]


def test_every_optional_object_renders_when_enabled(chart: Any) -> None:
    kinds = {obj["kind"] for obj in render(chart, ALL_ON)}
    assert {"NetworkPolicy", "PodDisruptionBudget", "PodMonitor"} <= kinds
    assert "ServiceMonitor" not in kinds  # the operator serves no metrics (values.yaml says why)


def test_the_crd_is_the_operators(chart: Any) -> None:
    link = CHART / "crds" / "saga.yaml"
    assert link.is_symlink() and link.resolve() == OPERATOR_CRD.resolve()
    assert not Path(str(link.readlink())).is_absolute()  # the link survives a clone elsewhere
    (crd,) = chart.crds
    assert crd["data"] == OPERATOR_CRD.read_text()


# -- RBAC ------------------------------------------------------------------------------------------


def test_rbac_is_exactly_what_the_operator_needs(chart: Any) -> None:
    objects = render(chart, {})
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert triples(role) == RULES
    binding = one(objects, "RoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rbac_has_no_wildcard_and_no_secret(chart: Any, values: Obj) -> None:
    for role in of_kind(render(chart, values), "Role") + of_kind(
        render(chart, values), "ClusterRole"
    ):
        for group, resource, verb in triples(role):
            assert "*" not in (group, resource, verb)
            assert resource != "secrets"
            assert verb not in ("escalate", "bind", "impersonate")


def test_each_watched_namespace_gets_its_role(chart: Any) -> None:
    objects = render(chart, ALL_ON)
    roles = of_kind(objects, "Role")
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["billing", "shop"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["billing", "shop"]
    assert all(triples(role) == RULES for role in roles)
    for binding in bindings:  # the operator's account lives in the release namespace
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    assert env_of(one(objects, "Deployment"))["SAGALINE_OPERATOR_NAMESPACES"] == "shop,billing"


def test_clusterwide_uses_a_cluster_role(chart: Any) -> None:
    objects = render(chart, CLUSTERWIDE)
    assert not of_kind(objects, "Role") and not of_kind(objects, "RoleBinding")
    role = one(objects, "ClusterRole")
    assert triples(role) == CLUSTERWIDE_RULES
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert NAMESPACE in role["metadata"]["name"]  # two releases never share one
    env = env_of(one(objects, "Deployment"))
    assert env["SAGALINE_OPERATOR_CLUSTERWIDE"] == "true"
    assert "SAGALINE_OPERATOR_NAMESPACES" not in env


def test_rbac_and_account_can_be_brought(chart: Any) -> None:
    objects = render(chart, BRING_YOUR_OWN)
    assert {obj["kind"] for obj in objects} == {"Deployment", "CustomResourceDefinition"}
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "ops"


# -- the operator's Deployment ---------------------------------------------------------------------


def test_deployment_runs_one_restricted_operator(chart: Any) -> None:
    objects = render(chart, {})
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["name"] == RELEASE
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "sagaline_operator"]
    assert container["image"] == "sagaline:0.1.0"  # the chart's appVersion
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_deployment_environment_and_probes(chart: Any) -> None:
    deployment = one(render(chart, {}), "Deployment")
    env = env_of(deployment)
    assert env["SAGALINE_OPERATOR_NAMESPACES"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SAGALINE_OPERATOR_STRIMZI_API_VERSION"] == "kafka.strimzi.io/v1beta2"
    assert env["SAGALINE_OPERATOR_LIVENESS_ENDPOINT"] == "http://0.0.0.0:9180/healthz"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "health", "containerPort": 9180, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_every_object_carries_the_helm_labels(chart: Any) -> None:
    for obj in render(chart, ALL_ON):
        if obj["kind"] == "CustomResourceDefinition":
            continue
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "sagaline-operator"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "sagaline"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "sagaline-operator-0.1.0"


def test_all_on_values_reach_the_pod(chart: Any) -> None:
    deployment = one(render(chart, ALL_ON), "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/acme/sagaline@sha256:" + "a" * 64
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["metadata"]["labels"]["example.com/tier"] == "control"
    assert template["metadata"]["annotations"] == {"example.com/team": "payments"}
    assert pod["nodeSelector"] and pod["tolerations"] and pod["affinity"]
    env = env_of(deployment)
    assert env["SAGALINE_OPERATOR_STRIMZI_API_VERSION"] == "kafka.strimzi.io/v1"
    assert env["SAGALINE_OPERATOR_RESYNC_INTERVAL_S"] == "60"
    assert env["SAGALINE_OPERATOR_COUNTS_INTERVAL_S"] == "2.5"
    assert env["SAGALINE_OPERATOR_SUMMARY_TIMEOUT_S"] == "3"


# -- the optional objects --------------------------------------------------------------------------


def test_network_policy_allows_health_in_and_api_dns_orchestrators_out(chart: Any) -> None:
    policy = one(render(chart, ALL_ON), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "health", "protocol": "TCP"}]
    dns, api, orchestrators = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    assert [peer["ipBlock"]["cidr"] for peer in api["to"]] == ["10.96.0.1/32", "172.18.0.2/32"]
    assert orchestrators["ports"] == [{"port": 8080, "protocol": "TCP"}]
    (peer,) = orchestrators["to"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "orchestrator"
    expression = peer["namespaceSelector"]["matchExpressions"][0]
    assert expression["values"] == ["shop", "billing"]
    clusterwide = one(render(chart, CLUSTERWIDE), "NetworkPolicy")["spec"]
    assert clusterwide["egress"][2]["to"][0]["namespaceSelector"] == {}


@pytest.mark.parametrize(
    ("allow", "budget"), [(True, {"maxUnavailable": 1}), (False, {"minAvailable": 1})]
)
def test_disruption_budget_of_the_single_pod(chart: Any, allow: bool, budget: Obj) -> None:
    values = {"podDisruptionBudget": {"enabled": True, "allowEviction": allow}}
    spec = one(render(chart, values), "PodDisruptionBudget")["spec"]
    assert {
        k: v for k, v in spec.items() if k.endswith("Available") or k.endswith("Unavailable")
    } == budget
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pod_monitor_scrapes_the_ports_the_operator_names_in_the_watched_namespaces(
    chart: Any,
) -> None:
    monitor = one(render(chart, ALL_ON), "PodMonitor")
    spec = monitor["spec"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert spec["namespaceSelector"] == {"matchNames": ["shop", "billing"]}
    assert one(render(chart, CLUSTERWIDE), "PodMonitor")["spec"]["namespaceSelector"] == {
        "any": True
    }
    defaults = {"monitoring": {"podMonitor": {"enabled": True}}}
    default_spec = one(render(chart, defaults), "PodMonitor")["spec"]
    assert default_spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert {e["interval"] for e in default_spec["podMetricsEndpoints"]} == {"30s"}
    # What the operator builds: every pod it runs is selected, and each port it names is scraped.
    pods = [
        obj["spec"]["template"]
        for obj in manifests.workloads(load_definition(default_definition_path()), "shop")
        if obj["kind"] == "Deployment"
    ]
    assert pods
    wanted = spec["selector"]["matchLabels"]
    assert all(wanted.items() <= pod["metadata"]["labels"].items() for pod in pods)
    ports = {
        port["name"]
        for pod in pods
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
        for port in container.get("ports", [])
    }
    paths = {e["port"]: e["path"] for e in spec["podMetricsEndpoints"]}
    assert paths == {"http": "/metrics/", "metrics": "/metrics"}
    assert set(paths) == ports


# -- the values' schema ----------------------------------------------------------------------------

BAD_VALUES = {
    "two operators at once": {"replicas": 2},
    "unknown top-level key": {"replica": 1},
    "unknown nested key": {"image": {"name": "sagaline"}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "digest": {"image": {"digest": "latest"}},
    "clusterwide type": {"watch": {"clusterwide": "yes"}},
    "namespace name": {"watch": {"namespaces": ["Shop"]}},
    "zero interval": {"operator": {"resyncIntervalSeconds": 0}},
    "strimzi api": {"operator": {"strimziApiVersion": "v1"}},
    "health port of a service": {"operator": {"healthPort": 8081}},
    "port range": {"operator": {"healthPort": 70000}},
    "eviction type": {"podDisruptionBudget": {"allowEviction": "no"}},
    "cidr": {"networkPolicy": {"apiServerCIDRs": ["api.example.com"]}},
    "scrape interval": {"monitoring": {"podMonitor": {"interval": "30"}}},
    "unknown monitor": {"monitoring": {"serviceMonitor": {"enabled": True}}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_refuses_bad_values(chart: Any, values: Obj) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_schema_knows_every_default_value() -> None:
    """Each key of values.yaml is a property of the schema, at every level the chart defines."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(values: Obj, node: Obj, path: str) -> None:
        assert node.get("additionalProperties") is False, path
        for key, value in values.items():
            assert key in node["properties"], f"{path}.{key}"
            child = node["properties"][key]
            if isinstance(value, dict) and child.get("additionalProperties") is False:
                walk(value, child, f"{path}.{key}")

    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    walk(defaults, schema, "values")
    assert {"image", "watch", "operator", "networkPolicy", "podDisruptionBudget", "monitoring"} <= {
        key
        for key, value in schema["properties"].items()
        if value.get("additionalProperties") is False
    }
