"""Session fixtures of the end-to-end tests: one cluster, one Kafka, one PostgreSQL, one
operator for the whole run (see support.py for the two modes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagaline.lab.launchers import apache_kafka
from sagaline.lab.launchers.apache_kafka import ApacheKafka
from sagaline.lab.ports import free_port
from sagaline.services.registry import SERVICES
from tests.e2e import cnpg_standin, controlplane
from tests.e2e.controlplane import ControlPlane
from tests.e2e.strimzi_standin import StrimziStandIn
from tests.e2e.support import (
    CHART,
    DATABASES_DIR,
    HERE,
    KIND,
    KIND_NEEDS_DOCKER,
    LOCAL,
    NAMESPACE,
    RELEASE,
    STANDIN_CRDS,
    Cluster,
    ExistingCluster,
    OperatorProcess,
    get,
    kind_reason,
    mode,
    unavailable,
    wait_for,
)

KIND_ONLY = pytest.StashKey[list[str]]()
KAFKA_CLUSTER = "sagaline"  # the Saga's kafka.cluster: the strimzi.io/cluster label


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is an e2e test (`make e2e`), whatever its own marks. On the local
    control plane the checks only kind can make (they use the `kind_only` fixture) are not
    collected, and the summary says why: they run in the kind workflow, and nothing that can run
    here is skipped."""
    kept, kind_only = [], []
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if mode() != KIND and "kind_only" in getattr(item, "fixturenames", ()):
                kind_only.append(item)
                continue
        kept.append(item)
    if kind_only:
        config.hook.pytest_deselected(items=kind_only)
        items[:] = kept
        config.stash[KIND_ONLY] = [item.name for item in kind_only]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    names = config.stash.get(KIND_ONLY, [])
    if names:
        terminalreporter.write_line(
            f"{len(names)} kind-only checks not run on this control plane ({', '.join(names)}): "
            + KIND_NEEDS_DOCKER
        )


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def cluster(e2e_dir: Path) -> Iterator[Cluster]:
    """Local: a control plane of the session's own, with the stand-in CRDs (Strimzi's
    KafkaTopic and KafkaUser, CloudNativePG's Cluster and Database, the Prometheus Operator's
    ServiceMonitor). kind: the cluster KUBECONFIG names, with the real operators installed."""
    if mode() == KIND:
        reason = kind_reason()
        if reason is not None:  # even under CI: this machine kind cannot run kind
            pytest.skip(reason)
        yield ExistingCluster(Path(os.environ["KUBECONFIG"]), e2e_dir)
        return
    unavailable("The Kubernetes control plane", controlplane.unavailable_reason())
    plane = ControlPlane(e2e_dir / "k8s", name="sagaline-e2e")
    plane.start(timeout_s=180)
    try:
        plane.kubectl("apply", "--server-side", "-f", str(STANDIN_CRDS))
        for crd in ("kafkatopics.kafka.strimzi.io", "kafkausers.kafka.strimzi.io"):
            plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def local_only() -> None:
    if mode() != LOCAL:
        pytest.skip("this test runs the parts as local processes (SAGALINE_E2E_CLUSTER=local)")


@pytest.fixture(scope="session")
def kafka(e2e_dir: Path, local_only: None) -> Iterator[ApacheKafka]:
    """The real Apache Kafka the stand-in creates topics, users and ACLs in, and the local
    services use."""
    unavailable("Apache Kafka", apache_kafka.unavailable_reason())
    apache_kafka.resolve_jars()
    # authorizing: a second, SCRAM listener where only what the KafkaUsers' ACLs grant is
    # allowed; the PLAINTEXT one stays the platform's (the stand-in's, the local services').
    broker = ApacheKafka(
        log_path=e2e_dir / "kafka.log", data_dir=e2e_dir / "kafka", authorizing=True
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def strimzi(cluster: Cluster, kafka: ApacheKafka) -> Iterator[StrimziStandIn | None]:
    """Local: the stand-in for Strimzi's Topic and User Operators on the session's Kafka."""
    standin = StrimziStandIn(cluster.kubeconfig, kafka.bootstrap_servers, cluster=KAFKA_CLUSTER)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="session")
def service_ports(local_only: None) -> dict[str, int]:
    """The local services' ports, chosen before the operator starts: it reads the saga counts
    from this orchestrator."""
    return {service: free_port() for service in SERVICES}


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> str:
    """README: `helm install sagaline-operator charts/sagaline-operator -n sagaline
    --create-namespace`; returns the namespace.

    kind: the image built from the Containerfile (SAGALINE_E2E_IMAGE) runs the operator. Local:
    KWOK runs no container, so the chart's Deployment becomes Available without running
    anything; the release is then upgraded to `replicas=0` (nothing may reconcile twice) and the
    operator runs as a local process with the chart's ServiceAccount (the `operator` fixture)."""
    arguments = ["install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace"]
    if mode() == KIND:
        image = os.environ.get("SAGALINE_E2E_IMAGE", "sagaline:e2e")
        repository, _, tag = image.rpartition(":")
        arguments += ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]
        arguments += ["--set", "image.pullPolicy=IfNotPresent"]
    cluster.helm(*arguments, "--wait", "--timeout=3m", timeout_s=240)
    if mode() == LOCAL:
        cluster.helm(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values", "--set", "replicas=0"
        )
        wait_for(
            lambda: not get(cluster, "pods", "-n", NAMESPACE, "-l", _operator_selector())["items"],
            within=60,
            what="the chart's operator pod to go (replicas=0)",
        )
    return NAMESPACE


def _operator_selector() -> str:
    return f"app.kubernetes.io/instance={RELEASE}"


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, installed: str, e2e_dir: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess | None]:
    """Local: the operator as a local process under the chart's ServiceAccount, on its own
    health port (SAGALINE_OPERATOR_LIVENESS_ENDPOINT), re-checking often so that the tests do
    not wait; with the Strimzi stand-in running. kind: the chart's own Deployment, available."""
    if mode() == KIND:
        cluster.kubectl(
            "rollout",
            "status",
            f"deployment/{RELEASE}",
            "-n",
            installed,
            "--timeout=180s",
            timeout_s=200,
        )
        yield None
        return
    request.getfixturevalue("strimzi")
    service_ports: dict[str, int] = request.getfixturevalue("service_ports")
    kubeconfig = cluster.service_account_kubeconfig(
        RELEASE, installed, e2e_dir / "operator.kubeconfig"
    )
    health = free_port()
    orchestrator = f"http://127.0.0.1:{service_ports['orchestrator']}/sagas/summary"
    process = OperatorProcess(
        kubeconfig,
        {
            "SAGALINE_OPERATOR_NAMESPACES": installed,
            "SAGALINE_OPERATOR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{health}/healthz",
            "SAGALINE_OPERATOR_RESYNC_INTERVAL_S": "2",
            "SAGALINE_OPERATOR_COUNTS_INTERVAL_S": "2",
            "SAGALINE_OPERATOR_RETRY_BACKOFF_S": "1",
            # The saga counts come from the local orchestrator (no Service routes here).
            "SAGALINE_OPERATOR_SUMMARY_URL": orchestrator,
        },
        e2e_dir / "operator.log",
    )
    process.start()
    try:

        def healthy() -> bool:
            if not process.alive():
                raise AssertionError(f"the operator exited:\n{process.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=1).is_success
            return False

        wait_for(healthy, within=60, what="the operator's health endpoint")
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def databases(cluster: Cluster, installed: str, request: pytest.FixtureRequest) -> str | None:
    """README: `kubectl apply -n sagaline -f k8s/databases/`. Local: the CloudNativePG stand-in
    makes the roles and databases on the session's PostgreSQL (whose URL it returns); kind: the
    real CloudNativePG, whose Cluster must become Ready (None)."""
    cluster.kubectl("apply", "-n", installed, "-f", str(DATABASES_DIR))
    if mode() == KIND:
        cluster.kubectl(
            "wait",
            "-n",
            installed,
            "--for=condition=Ready",
            "clusters.postgresql.cnpg.io",
            "--all",
            "--timeout=600s",
            timeout_s=620,
        )
        return None
    server: str = request.getfixturevalue("postgres_server")
    cnpg_standin.provision(cluster, installed, server)
    return server
