"""Building the Kubernetes tools into the cache with Go, once (≈13 min cold on two idle cores,
instant when built): `ensure_tools()`, under a file lock, a marker written per part when it is
built. Kubernetes from a throwaway module that requires `k8s.io/kubernetes` (its staging modules
replaced with the published ones); kwok, kwokctl and helm with `go install`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sagaline.lab.launchers.process import exclusive, kill, log_tail
from sagaline.lab.status import StatusLine
from tests.e2e.controlplane.kube_tools import (
    HELM_VERSION,
    KUBERNETES_COMMANDS,
    KUBERNETES_PART,
    KUBERNETES_VERSION,
    KWOK_COMMANDS,
    KWOK_PART,
    KWOK_VERSION,
    LOG_TAIL_LINES,
    PARTS,
    ControlPlaneError,
    Steps,
    bin_dir,
    digest,
    go_binary,
    kubernetes_ldflags,
    tools_built,
    tools_home,
    unavailable_reason,
)


def ensure_tools(progress: StatusLine | None = None, steps: Steps | None = None) -> Path:
    """The bin directory with every tool built; builds what is missing (≈13 min cold on two
    idle cores; instant when built). Raises ControlPlaneError with what to fix."""
    say = progress or (lambda _message: None)
    if tools_built():
        return bin_dir()
    reason = unavailable_reason()
    if reason is not None:
        raise ControlPlaneError(reason)
    go = go_binary()
    assert go is not None
    home = tools_home()
    with exclusive(home / ".lock", say, "building the Kubernetes tools"):
        bin_dir().mkdir(parents=True, exist_ok=True)
        for part in PARTS:
            if part.built():  # built before, or by the process this one waited for
                continue
            started = time.monotonic()
            if part is KUBERNETES_PART:
                _build_kubernetes(go, say, steps)
            elif part is KWOK_PART:
                say(f"installing kwok and kwokctl {KWOK_VERSION}")
                packages = [f"sigs.k8s.io/kwok/cmd/{c}@{KWOK_VERSION}" for c in KWOK_COMMANDS]
                _go_install(go, packages, steps=steps)
            else:
                say(f"installing helm {HELM_VERSION}")
                packages = [f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"]
                _go_install(go, packages, ldflags=_helm_ldflags(go), steps=steps)
            part.marker.write_text(digest(part.recipe) + "\n")
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
            kill(process)
    if code != 0:
        tail = log_tail(log_path, LOG_TAIL_LINES, window=256 * 1024)
        raise ControlPlaneError(
            f"`{' '.join(command)}` failed (exit {code}); see {log_path}:\n{tail}"
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


def _build_kubernetes(go: str, say: StatusLine, steps: Steps | None) -> None:
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
            ["build", "-v", "-ldflags", kubernetes_ldflags(), "-o", f"{staging}/", *packages],
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
