"""Helpers of the end-to-end tests: which cluster they run on, kubectl and helm on it, the
operator as a local process, polling with deadlines.

Two modes, chosen by `SAGALINE_E2E_CLUSTER`:

- `local` (the default): a real control plane the session starts on this machine
  (`tests.e2e.controlplane`: kube-apiserver, kube-controller-manager, kube-scheduler, etcd, KWOK's
  fake nodes), with stand-ins for what cannot run here: Strimzi's Topic and User Operators
  (`strimzi_standin.py`, on the Apache Kafka the session starts) and CloudNativePG
  (`cnpg_standin.py`, on the embedded PostgreSQL). The operator and the services run as local
  processes; pods are KWOK's (Running and Ready, no container runs).
- `kind`: an existing kind cluster (`KUBECONFIG`) with the real Strimzi and CloudNativePG
  operators and the image built from the Containerfile (`.github/workflows/e2e.yml`). The
  operator runs in the cluster from the chart, the services in their pods. kind needs Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import yaml

from tests.e2e import controlplane
from tests.e2e.controlplane import ControlPlaneError

T = TypeVar("T")
Body = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = ROOT / "charts" / "sagaline-operator"
SAGA_FILE = ROOT / "k8s" / "sagas" / "order.yaml"
DATABASES_DIR = ROOT / "k8s" / "databases"
STANDIN_CRDS = HERE / "crds"

MODE_VARIABLE = "SAGALINE_E2E_CLUSTER"
LOCAL, KIND = "local", "kind"
NAMESPACE = "sagaline"  # the README's
RELEASE = "sagaline-operator"
KIND_NEEDS_DOCKER = (
    "kind needs Docker (or Podman), which this machine does not have: the kind mode runs in "
    ".github/workflows/e2e.yml (SAGALINE_E2E_CLUSTER=kind with KUBECONFIG naming the kind "
    "cluster)"
)


def mode() -> str:
    value = os.environ.get(MODE_VARIABLE, LOCAL).strip().lower() or LOCAL
    if value not in (LOCAL, KIND):
        raise pytest.UsageError(f"{MODE_VARIABLE} must be {LOCAL} or {KIND}, not {value!r}")
    return value


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, reason: str | None) -> None:
    """Skip a test whose part cannot run here, with the reason; under CI=true, fail it."""
    if reason is None:
        return
    message = f"{what} cannot run here: {reason}"
    if under_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def docker_available() -> bool:
    docker = shutil.which("docker") or shutil.which("podman")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def kind_reason() -> str | None:
    """Why the kind mode cannot run here (None when it can): it skips even under CI, since
    this machine kind cannot have it."""
    if not docker_available():
        return KIND_NEEDS_DOCKER
    if not os.environ.get("KUBECONFIG"):
        return "the kind mode needs KUBECONFIG naming the kind cluster"
    return None


def wait_for(
    probe: Callable[[], T | bool | None], *, within: float, what: str, every: float = 0.25
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(every)


# -- clusters --------------------------------------------------------------------------------------


class Cluster(Protocol):
    """What the tests need of a cluster: kubectl and helm as its admin, a kubeconfig, and a
    kubeconfig for a ServiceAccount."""

    @property
    def kubeconfig(self) -> Path: ...

    def env(self) -> dict[str, str]: ...

    def kubectl(
        self,
        *arguments: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout_s: float = 60,
    ) -> subprocess.CompletedProcess[str]: ...

    def helm(
        self, *arguments: str, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]: ...

    def service_account_kubeconfig(
        self, service_account: str, namespace: str, path: Path, *, duration: str = "2h"
    ) -> Path: ...


class ExistingCluster:
    """A cluster someone else started (kind in its workflow): kubectl and helm from PATH."""

    def __init__(self, kubeconfig: Path, state_dir: Path) -> None:
        self._kubeconfig = kubeconfig
        self.state_dir = state_dir

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self._kubeconfig)
        return env

    def _tool(self, name: str) -> str:
        found = shutil.which(name) or str(controlplane.binary(name))
        return found

    def kubectl(
        self,
        *arguments: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout_s: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return run([self._tool("kubectl"), *arguments], env, input, check, timeout_s)

    def helm(
        self, *arguments: str, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run([self._tool("helm"), *arguments], self.env(), None, check, timeout_s)

    def service_account_kubeconfig(
        self, service_account: str, namespace: str, path: Path, *, duration: str = "2h"
    ) -> Path:
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        view = self.kubectl("config", "view", "--raw", "--minify", "-o", "json")
        admin = json.loads(view.stdout)
        cluster = admin["clusters"][0]
        user = f"system:serviceaccount:{namespace}:{service_account}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {"name": user, "context": {"cluster": cluster["name"], "user": user}},
            ],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def run(
    command: list[str],
    env: Mapping[str, str],
    input: str | None,
    check: bool,
    timeout_s: float,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            command, env=dict(env), input=input, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(f"`{' '.join(command)}` took over {timeout_s:.0f} s") from exc
    if check and result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip()
        raise ControlPlaneError(f"`{' '.join(command)}` failed (exit {result.returncode}): {said}")
    return result


def get(cluster: Cluster, *arguments: str, kubeconfig: Path | None = None) -> Body:
    """`kubectl get ARGUMENTS -o json` as a dict."""
    answer = cluster.kubectl("get", *arguments, "-o", "json", kubeconfig=kubeconfig)
    result: Body = json.loads(answer.stdout)
    return result


def get_or_none(cluster: Cluster, *arguments: str) -> Body | None:
    answer = cluster.kubectl("get", *arguments, "-o", "json", check=False)
    if answer.returncode != 0:
        if "NotFound" in answer.stderr or "not found" in answer.stderr:
            return None
        raise ControlPlaneError(f"kubectl get {' '.join(arguments)}: {answer.stderr.strip()}")
    result: Body = json.loads(answer.stdout)
    return result


def items(cluster: Cluster, kind: str, namespace: str, selector: str | None = None) -> list[Body]:
    arguments = [kind, "-n", namespace]
    if selector:
        arguments += ["-l", selector]
    found: list[Body] = get(cluster, *arguments)["items"]
    return found


def apply(cluster: Cluster, document: Body | list[Body] | str, *extra: str) -> str:
    """`kubectl apply -f -` of a document (or a list of them, or YAML text)."""
    if isinstance(document, str):
        text = document
    else:
        documents = document if isinstance(document, list) else [document]
        text = yaml.safe_dump_all(documents)
    return cluster.kubectl("apply", "-f", "-", *extra, input=text).stdout


def condition(obj: Body | None, kind: str) -> Body | None:
    if obj is None:
        return None
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return None


def is_true(obj: Body | None, kind: str = "Ready") -> bool:
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def load_yaml(path: Path) -> Body:
    document: Body = yaml.safe_load(path.read_text())
    return document


# -- the operator as a local process -------------------------------------------------------------


class OperatorProcess:
    """`python -m sagaline_operator` on this machine, as the chart's ServiceAccount (its token in
    a kubeconfig of its own): the real API server enforces the chart's Role on it."""

    def __init__(self, kubeconfig: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.extra_env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            # Only its own credentials: not the in-cluster account, not the admin's kubeconfig.
            if not key.startswith("KUBERNETES_SERVICE") and key != "KUBECONFIG"
        }
        env.update(self.extra_env)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys_executable(), "-m", "sagaline_operator"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The log's last lines, without Kopf's line per successful timer run."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if not line.endswith("' succeeded.")]
        return "\n".join(kept[-lines:])

    def stop(self, grace_s: float = 15) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def sys_executable() -> str:
    import sys

    return sys.executable


class PortForward:
    """`kubectl port-forward svc/NAME LOCAL:REMOTE` while the block runs (the kind mode reaches
    the services' APIs this way)."""

    def __init__(self, cluster: Cluster, namespace: str, target: str, remote_port: int) -> None:
        from sagaline.lab.ports import free_port

        self.cluster = cluster
        self.namespace = namespace
        self.target = target
        self.remote_port = remote_port
        self.local_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def __enter__(self) -> PortForward:
        from sagaline.lab.ports import wait_for_port

        kubectl = shutil.which("kubectl") or str(controlplane.binary("kubectl"))
        self.process = subprocess.Popen(
            [
                kubectl,
                "port-forward",
                "-n",
                self.namespace,
                self.target,
                f"{self.local_port}:{self.remote_port}",
            ],
            env=self.cluster.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port("127.0.0.1", self.local_port, 30):
            self.__exit__()
            raise AssertionError(f"kubectl port-forward {self.target} did not listen")
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
