"""The Tiltfile, run by a Starlark interpreter (starlark-pyo3) with each Tilt builtin it calls
stubbed and recorded (`load('ext://...')` answered with stubs of the extensions): every path it
names exists, its resources form a DAG that ends at the Saga, the Saga and the operator get the
image it builds, and the four APIs are forwarded to the Services the operator makes."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import starlark
import yaml
from sagaline_operator.manifests import HTTP_PORT, units

from sagaline.domain.definition import load_definition

ROOT = Path(__file__).resolve().parents[2]
TILTFILE = ROOT / "Tiltfile"
SAGA_FILE = ROOT / "k8s" / "sagas" / "order.yaml"
KAFKA_FILE = ROOT / "k8s" / "dev" / "kafka.yaml"

Obj = dict[str, Any]


@dataclass
class Blob:
    """What Tilt's Blob stands for here: YAML from a file, an encoded object, or a chart."""

    path: str | None = None
    objects: list[Obj] = field(default_factory=list)
    chart: Obj | None = None
    namespace: str | None = None


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def read_objects(path: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all((ROOT / path).read_text()) if doc]


class Tilt:
    """The builtins the Tiltfile may call, each recording its calls and answering in kind."""

    EXTENSIONS = {
        "ext://helm_resource": ("helm_repo", "helm_resource"),
        "ext://namespace": ("namespace_create", "namespace_inject", "namespace_yaml"),
    }

    def __init__(self) -> None:
        self.calls: list[Call] = []
        blob = starlark.OpaquePythonObject
        self.answers: dict[str, Callable[..., Any]] = {
            "version_settings": lambda *a, **k: None,
            "allow_k8s_contexts": lambda *a, **k: None,
            "default_registry": lambda *a, **k: None,
            "k8s_context": lambda: "kind-sagaline",
            "config_define_string": lambda *a, **k: None,
            "config_parse": lambda: {},
            "read_yaml": lambda path, **k: yaml.safe_load((ROOT / path).read_text()),
            "read_yaml_stream": lambda path, **k: read_objects(path),
            "encode_yaml": lambda obj: blob(Blob(objects=[obj])),
            "helm": lambda path, **k: blob(Blob(chart={"path": path, **k})),
            "namespace_create": lambda *a, **k: None,
            "namespace_inject": lambda x, ns: blob(self.inject(x, ns)),
            "k8s_yaml": lambda *a, **k: None,
            "k8s_resource": lambda *a, **k: None,
            "k8s_kind": lambda *a, **k: None,
            "docker_build": lambda *a, **k: None,
            "fall_back_on": lambda paths: {"step": "fall_back_on", "paths": paths},
            "sync": lambda local, remote: {"step": "sync", "local": local, "remote": remote},
            "run": lambda cmd, **k: {"step": "run", "cmd": cmd, **k},
            "local_resource": lambda *a, **k: None,
            "link": lambda url, name="": {"url": url, "name": name},
            "helm_repo": lambda *a, **k: None,
            "helm_resource": lambda *a, **k: None,
        }

    @staticmethod
    def inject(x: str | Blob, namespace: str) -> Blob:
        if isinstance(x, str):
            return Blob(path=x, objects=read_objects(x), namespace=namespace)
        injected = copy.deepcopy(x)
        injected.namespace = namespace
        return injected

    def stub(self, name: str) -> Callable[..., Any]:
        answer = self.answers[name]

        def builtin(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(Call(name, args, kwargs))
            return answer(*args, **kwargs)

        return builtin

    def extension(self, name: str) -> Any:
        module = starlark.Module()
        for symbol in self.EXTENSIONS[name]:  # KeyError: an extension the test does not know
            if symbol in self.answers:
                module.add_callable(symbol, self.stub(symbol))
        return module.freeze()

    def of(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    def one(self, name: str) -> Call:
        (call,) = self.of(name)
        return call


EXTENSION_ONLY = {symbol for symbols in Tilt.EXTENSIONS.values() for symbol in symbols}


@cache
def tilt_up() -> Tilt:
    """Run the Tiltfile once against the stubs."""
    tilt = Tilt()
    dialect = starlark.Dialect.extended()
    library = starlark.Globals.extended_by(
        [starlark.LibraryExtension.StructType, starlark.LibraryExtension.Print]
    )
    module = starlark.Module()
    for name in tilt.answers:
        if name not in EXTENSION_ONLY:
            module.add_callable(name, tilt.stub(name))
    prelude = "config = struct(define_string = config_define_string, parse = config_parse)"
    starlark.eval(module, starlark.parse("prelude", prelude, dialect), library)
    tiltfile = starlark.parse("Tiltfile", TILTFILE.read_text(), dialect)
    starlark.eval(module, tiltfile, library, starlark.FileLoader(tilt.extension))
    return tilt


def applied(tilt: Tilt) -> list[Blob]:
    blobs = [call.args[0] for call in tilt.of("k8s_yaml")]
    assert all(isinstance(blob, Blob) for blob in blobs)
    return blobs


def resources(tilt: Tilt) -> dict[str, list[str]]:
    """Each Tilt resource the Tiltfile makes or configures, with its resource_deps."""
    graph: dict[str, list[str]] = {}
    for call in tilt.of("helm_repo"):
        graph[call.kwargs.get("resource_name") or call.args[0]] = []
    for kind in ("helm_resource", "local_resource"):
        for call in tilt.of(kind):
            graph[call.args[0]] = list(call.kwargs.get("resource_deps", []))
    for call in tilt.of("k8s_resource"):
        name = call.kwargs.get("new_name") or call.args[0]
        graph[name] = list(call.kwargs.get("resource_deps", []))
    return graph


def ancestors(graph: dict[str, list[str]], name: str) -> set[str]:
    found: set[str] = set()
    stack = list(graph[name])
    while stack:
        dep = stack.pop()
        if dep not in found:
            found.add(dep)
            stack.extend(graph[dep])
    return found


def live_update(tilt: Tilt) -> list[Obj]:
    steps = tilt.one("docker_build").kwargs["live_update"]
    assert isinstance(steps, list)
    return steps


def operator_chart(tilt: Tilt) -> tuple[Obj, list[Obj]]:
    """The helm() call and what it renders (with helm_python, as `helm template` would)."""
    (chart_blob,) = [blob for blob in applied(tilt) if blob.chart]
    chart = chart_blob.chart
    assert chart is not None
    values: Obj = {}
    for assignment in chart.get("set", []):
        deep_merge(values, helm_python.parse_set_string(assignment))
    with helm_python.Chart.load(ROOT / chart["path"]) as loaded:
        rendered = loaded.render(values, name=chart["name"], namespace=chart["namespace"])
        crds = [doc for crd in loaded.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
    objects = [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return chart, objects + crds


def deep_merge(into: Obj, update: Obj) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value


def selector_of(obj: Obj) -> str:
    return f"{obj['metadata']['name']}:{obj['kind'].lower()}"


# -- the tests -------------------------------------------------------------------------------------


def test_every_path_it_names_exists() -> None:
    tilt = tilt_up()
    paths: set[str] = set()
    build = tilt.one("docker_build")
    paths |= {build.args[1], build.kwargs["dockerfile"], *build.kwargs["only"]}
    for step in live_update(tilt):
        if step["step"] == "fall_back_on":
            paths |= set(step["paths"])
        elif step["step"] == "sync":
            paths.add(step["local"])
    for name in ("read_yaml", "read_yaml_stream", "helm"):
        paths |= {call.args[0] for call in tilt.of(name)}
    paths |= {call.args[0] for call in tilt.of("namespace_inject") if isinstance(call.args[0], str)}
    missing = sorted(path for path in paths if not (ROOT / path).exists())
    assert not missing, f"the Tiltfile names paths that do not exist: {missing}"
    assert {"Containerfile", "charts/sagaline-operator", "k8s/dev/kafka.yaml"} <= paths
    assert "k8s/sagas/order.yaml" in paths


def test_it_applies_every_database_file() -> None:
    """A file added to k8s/databases/ is applied by `tilt up` too (as by kubectl apply -f)."""
    files = {blob.path for blob in applied(tilt_up()) if blob.path}
    expected = {f"k8s/databases/{p.name}" for p in (ROOT / "k8s" / "databases").glob("*.yaml")}
    assert expected <= files


def test_resources_form_a_dag_that_ends_at_the_saga() -> None:
    graph = resources(tilt_up())
    for name, deps in graph.items():
        unknown = set(deps) - graph.keys()
        assert not unknown, f"{name} depends on unknown resources {unknown}"
    order: list[str] = []
    while len(order) < len(graph):  # Kahn: fails (no progress) on a cycle
        ready = [n for n in graph if n not in order and set(graph[n]) <= set(order)]
        assert ready, f"a cycle among {set(graph) - set(order)}"
        order += sorted(ready)
    saga_needs = ancestors(graph, "saga")
    assert {"strimzi", "cnpg", "kafka", "databases", "sagaline-operator"} <= saga_needs
    assert ancestors(graph, "sagaline-operator") >= {"strimzi", "cnpg"}
    assert "strimzi" in ancestors(graph, "kafka") and "cnpg" in ancestors(graph, "databases")
    after_saga = {name for name in graph if "saga" in ancestors(graph, name)}
    assert after_saga == {name for name in graph if name.startswith("forward-")}
    assert saga_needs | {"saga"} | after_saga == graph.keys()  # nothing stands apart


def test_the_four_apis_are_forwarded_to_the_operators_services() -> None:
    forwards = {}
    for call in tilt_up().of("local_resource"):
        found = re.search(r"port-forward svc/(\S+) (\d+):(\d+)", call.kwargs.get("serve_cmd", ""))
        if found:
            service, local, remote = found.group(1), int(found.group(2)), int(found.group(3))
            assert remote == HTTP_PORT  # the port of every Service the operator makes
            forwards[local] = service
    assert forwards == {
        8080: "order-orchestrator",
        8081: "order-service",
        8082: "payment-service",
        8083: "stock-service",
    }
    # ... which are the names the operator gives them.
    assert list(forwards.values()) == [unit.name for unit in units(load_definition(SAGA_FILE))]


def test_the_saga_gets_the_built_image_and_fits_the_dev_kafka() -> None:
    tilt = tilt_up()
    kind = tilt.one("k8s_kind")
    assert kind.args == ("Saga",) and kind.kwargs["image_json_path"] == "{.spec.image}"
    image = tilt.one("docker_build").args[0]
    (saga_blob,) = [b for b in applied(tilt) if b.objects and b.objects[0]["kind"] == "Saga"]
    (saga,) = saga_blob.objects
    assert saga["spec"]["image"] == image  # Tilt swaps in the image it built
    assert saga_blob.namespace == "sagaline"
    kafka = read_objects("k8s/dev/kafka.yaml")
    (cluster,) = [o for o in kafka if o["kind"] == "Kafka"]
    brokers = sum(
        pool["spec"]["replicas"]
        for pool in kafka
        if pool["kind"] == "KafkaNodePool" and "broker" in pool["spec"]["roles"]
    )
    assert 1 <= saga["spec"]["kafka"]["replicas"] <= brokers
    assert saga["spec"]["kafka"].get("minInsyncReplicas", 1) <= saga["spec"]["kafka"]["replicas"]
    assert saga["spec"]["kafka"]["cluster"] == cluster["metadata"]["name"]
    plain = [lst for lst in cluster["spec"]["kafka"]["listeners"] if not lst["tls"]]
    host, port = saga["spec"]["kafka"]["bootstrapServers"].split(":")
    assert host == f"{cluster['metadata']['name']}-kafka-bootstrap"
    assert int(port) in {listener["port"] for listener in plain}
    original = yaml.safe_load(SAGA_FILE.read_text())
    assert saga["spec"]["steps"] == original["spec"]["steps"]  # only image and replicas differ


def test_the_operator_chart_gets_the_built_image_and_its_objects_exist() -> None:
    tilt = tilt_up()
    chart, objects = operator_chart(tilt)
    assert chart["namespace"] == "sagaline"
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].split(":")[0] == tilt.one("docker_build").args[0]
    configured = {call.args[0]: call for call in tilt.of("k8s_resource") if call.args}
    operator = configured[deployment["metadata"]["name"]]  # Tilt names it after the Deployment
    selectors = {selector_of(obj) for obj in objects}
    assert set(operator.kwargs["objects"]) <= selectors
    assert set(operator.kwargs["objects"]) | {selector_of(deployment)} == selectors


def test_grouped_objects_exist_in_what_is_applied() -> None:
    tilt = tilt_up()
    selectors = {selector_of(obj) for blob in applied(tilt) for obj in blob.objects}
    for call in tilt.of("k8s_resource"):
        if "new_name" in call.kwargs:
            assert set(call.kwargs["objects"]) <= selectors, call.kwargs["new_name"]
    (databases,) = [c for c in tilt.of("k8s_resource") if c.kwargs.get("new_name") == "databases"]
    every = {
        selector_of(o)
        for p in (ROOT / "k8s" / "databases").glob("*.yaml")
        for o in read_objects(str(p))
    }
    assert set(databases.kwargs["objects"]) == every


def test_live_update_fits_the_dev_image() -> None:
    tilt = tilt_up()
    build = tilt.one("docker_build")
    assert build.kwargs["dockerfile"] == "Containerfile" and build.kwargs["target"] == "dev"
    containerfile = (ROOT / "Containerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", containerfile, flags=re.MULTILINE)
    assert "dev" in stages and stages[-1] != "dev"  # a plain `docker build` never gives `dev`
    dev_stage = containerfile.split(" AS dev\n", 1)[1].split("\nFROM ", 1)[0]
    assert "ENV PYTHONPATH=/tmp/live" in dev_stage
    steps = live_update(tilt)
    assert [s["step"] for s in steps] == ["fall_back_on", "sync", "sync", "run"]
    for step in steps:
        if step["step"] == "sync":
            # where the installed package holds it: services/ is sagaline.services
            installed_as = {"services": "sagaline/services"}.get(step["local"], step["local"])
            assert step["remote"] == "/tmp/live/" + installed_as
            assert step["local"] in build.kwargs["only"]
    (run,) = [s for s in steps if s["step"] == "run"]
    script = run["cmd"].split()[1]
    assert f"COPY k8s/dev/live_update.py {script}" in dev_stage
    # Every migrations directory falls back to a full build (the pods' `migrate` must run again).
    migrations = {
        str(p.relative_to(ROOT))
        for root in (ROOT / "services", ROOT / "sagaline" / "storage")
        for p in root.rglob("*migrations")
        if p.is_dir()
    }
    assert len(migrations) == 6
    assert migrations <= set(steps[0]["paths"])


def test_infrastructure_charts_are_pinned() -> None:
    tilt = tilt_up()
    charts = {call.args[0]: call for call in tilt.of("helm_resource")}
    assert set(charts) == {"strimzi", "cnpg"}
    for call in charts.values():
        flags = call.kwargs["flags"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", flags[flags.index("--version") + 1])
    repos = {call.args[0]: call.args[1] for call in tilt.of("helm_repo")}
    assert {chart.args[1].split("/")[0] for chart in charts.values()} <= repos.keys()
    assert tilt.one("allow_k8s_contexts").args[0].startswith("kind-")
