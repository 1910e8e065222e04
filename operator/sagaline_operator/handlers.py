"""The Kopf side: which events start a reconciliation pass, the timers, login, deletion.

`make_registry(config)` returns a fresh registry, so that the process (`python -m
sagaline_operator`) and the tests each run the real Kopf runtime with their own settings.
Handlers are plain functions: Kopf runs them in its worker threads, where the kubernetes client's
blocking calls belong.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client

from sagaline_operator.config import GROUP, PLURAL, VERSION, OperatorConfig
from sagaline_operator.kube import Kube, configuration
from sagaline_operator.reconcile import Emit, Reconciler


class _Connection:
    """The reconciler, made once the operator has logged in (again after a 401)."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self._reconciler: Reconciler | None = None

    def connect(self, cfg: client.Configuration) -> None:
        old, self._reconciler = self._reconciler, None
        if old is not None:
            old.kube.close()
        kube = Kube(client.ApiClient(cfg), self.config.request_timeout_s)
        self._reconciler = Reconciler(kube, self.config)

    @property
    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            raise kopf.TemporaryError("not connected to the Kubernetes API yet", delay=1)
        return self._reconciler

    def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.kube.close()


def _emitter(body: kopf.Body) -> Emit:
    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    return emit


def _namespaced(namespace: str | None) -> str:
    if namespace is None:  # the CRD is namespaced: never for a Saga
        raise kopf.PermanentError("a Saga without a namespace")
    return namespace


def make_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    connection = _Connection(config)
    saga = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Kopf's own bookkeeping under our names, in annotations: the status is all ours.
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.peering.standalone = True  # one replica; no peering resources needed
        # Watching given namespaces needs no cluster-wide reads (namespaces, CRDs): the Saga
        # resource is discovered once at start, so install the CRD before the operator.
        settings.scanning.disabled = not config.clusterwide
        settings.posting.level = logging.WARNING  # our own Events say what was done
        settings.execution.max_workers = 8
        # A deleted Saga's timers stop between two ticks: wait for that briefly, then re-check
        # soon, rather than holding the finalizer for Kopf's default minute.
        settings.background.instant_exit_timeout = 2.0
        settings.background.cancellation_polling = 2.0

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if config.kube_server:
            connection.connect(configuration(config.kube_server))
            return kopf.ConnectionInfo(server=config.kube_server, insecure=True)
        info = kopf.login_via_client(**kwargs)  # in-cluster account, else the kubeconfig
        connection.connect(configuration(None))
        return info

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        connection.close()

    @kopf.on.resume(*saga, registry=registry, backoff=config.retry_backoff_s)
    @kopf.on.create(*saga, registry=registry, backoff=config.retry_backoff_s)
    @kopf.on.update(*saga, registry=registry, backoff=config.retry_backoff_s)
    def reconcile(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        connection.reconciler.reconcile(_namespaced(namespace), name, _emitter(body))

    @kopf.timer(*saga, registry=registry, interval=config.resync_interval_s)
    def resync(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        """Repairs drift (a deleted or edited child) and refreshes readiness."""
        connection.reconciler.reconcile(_namespaced(namespace), name, _emitter(body))

    @kopf.timer(*saga, registry=registry, interval=config.counts_interval_s)
    def counts(name: str, namespace: str | None, **_: Any) -> None:
        connection.reconciler.refresh_counts(_namespaced(namespace), name)

    @kopf.on.delete(*saga, registry=registry, backoff=config.retry_backoff_s)
    def finalize(body: kopf.Body, **_: Any) -> None:
        connection.reconciler.finalize(dict(body), _emitter(body))

    return registry


def run(config: OperatorConfig) -> None:
    namespaces = config.namespace_list
    if not namespaces and not config.clusterwide:
        raise SystemExit(
            "set SAGALINE_OPERATOR_NAMESPACES (the namespaces to watch) or "
            "SAGALINE_OPERATOR_CLUSTERWIDE=true"
        )
    kopf.run(
        registry=make_registry(config),
        standalone=True,
        clusterwide=config.clusterwide,
        namespaces=namespaces,
        liveness_endpoint=config.liveness_endpoint,
    )
