"""The cluster itself: a real API server of the version built, RBAC enforced, nodes Ready, and a
Deployment's pods scheduled by the real scheduler and made Running and Ready (KWOK's nodes)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sagaline.lab.launchers.process import pid_alive
from tests.e2e import controlplane
from tests.e2e.controlplane import KUBERNETES_VERSION, ControlPlane
from tests.e2e.support import Cluster, apply, get, is_true, mode, wait_for


def test_the_api_server_is_the_version_built(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    if mode() == "local":
        assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
        assert version["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    else:
        assert int(version["serverVersion"]["minor"].rstrip("+")) >= 29  # native sidecars


def test_rbac_is_enforced(cluster: Cluster) -> None:
    """A ServiceAccount nobody bound is refused, and the admin is not."""
    nobody = "--as=system:serviceaccount:default:nobody"
    refused = cluster.kubectl(
        "auth", "can-i", "get", "secrets", "-n", "default", nobody, check=False
    )
    assert refused.stdout.strip() == "no"
    forbidden = cluster.kubectl("get", "configmaps", "-n", "default", nobody, check=False)
    assert forbidden.returncode != 0
    assert "forbidden" in forbidden.stderr.lower()
    assert cluster.kubectl("auth", "can-i", "get", "secrets").stdout.strip() == "yes"


def test_nodes_are_ready(cluster: Cluster) -> None:
    nodes = get(cluster, "nodes")["items"]
    assert len(nodes) >= (2 if mode() == "local" else 1)
    assert all(is_true(node) for node in nodes)


def test_a_deployment_gets_running_and_ready_pods(cluster: Cluster) -> None:
    """The scheduler binds them to nodes, the controller-manager makes the ReplicaSet and the
    pods; the node (KWOK's, or kind's kubelet) makes them Running and Ready."""
    namespace = f"smoke-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        apply(
            cluster,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "image": "registry.k8s.io/pause:3.10",
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                }
                            ]
                        },
                    },
                },
            },
        )

        def ready_pods() -> list[dict] | None:
            pods = get(cluster, "pods", "-n", namespace, "-l", "app=web")["items"]
            running = [
                pod
                for pod in pods
                if pod["status"].get("phase") == "Running"
                and is_true(pod)
                and pod["spec"].get("nodeName")
            ]
            return running if len(running) == 3 else None

        pods = wait_for(ready_pods, within=60, what="3 pods Running and Ready")
        assert {pod["spec"]["nodeName"] for pod in pods} <= {
            node["metadata"]["name"] for node in get(cluster, "nodes")["items"]
        }
        deployment = get(cluster, "deployment", "web", "-n", namespace)
        assert deployment["status"].get("availableReplicas") == 3
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_the_tools_are_built_once(local_only: None) -> None:
    """A second call finds them built (the markers): nothing is rebuilt, nothing waits."""
    started = time.monotonic()
    assert controlplane.ensure_tools() == controlplane.bin_dir()
    assert time.monotonic() - started < 2
    assert controlplane.tools_built()


def test_a_control_plane_stops_clean(local_only: None, tmp_path: Path) -> None:
    """Start, answer, stop: its processes end, kwokctl's work dir was under the state dir (not
    ~/.kwok), and the user's ~/.kube/config got no context."""
    kube_config = Path.home() / ".kube" / "config"
    before = kube_config.read_bytes() if kube_config.exists() else None
    plane = ControlPlane(tmp_path / "state", name="stop-clean", nodes=1)
    plane.start(timeout_s=120)
    try:
        assert plane.cluster_dir.is_relative_to(tmp_path)
        assert not (Path.home() / ".kwok" / "clusters" / "stop-clean").exists()
        nodes = json.loads(plane.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert len(nodes) == 1
        pids = plane._pids()
        assert len(pids) == 5  # etcd, kube-apiserver, kube-controller-manager, scheduler, kwok
    finally:
        plane.stop()
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not plane.cluster_dir.exists()
    assert (kube_config.read_bytes() if kube_config.exists() else None) == before
