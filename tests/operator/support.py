"""The cluster the operator tests run against: kmock's KubernetesEmulator, a little more real.

The emulator stores objects and streams watch events; it does not give objects a uid, a
generation or a creation time, nor keep the status apart from the rest. `Cluster` adds exactly
that (what the operator's owner references, observedGeneration and conditions rely on), and the
helpers below do what Strimzi and the Deployment controller would: mark children Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import jsonpatch
import kmock
import kopf
import yaml
from sagaline_operator.config import OperatorConfig
from sagaline_operator.handlers import make_registry

ROOT = Path(__file__).resolve().parents[2]
ORDER_YAML = ROOT / "k8s" / "sagas" / "order.yaml"
CRD_YAML = ROOT / "operator" / "crds" / "saga.yaml"
NAMESPACE = "shop"

SAGAS = "sagaline.io/v1alpha1/sagas"
TOPICS = "kafka.strimzi.io/v1beta2/kafkatopics"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
CONFIG_MAPS = "v1/configmaps"
USERS = "kafka.strimzi.io/v1beta2/kafkausers"
BUDGETS = "policy/v1/poddisruptionbudgets"
EVENTS = "v1/events"

Body = dict[str, Any]
T = TypeVar("T")
_versions = itertools.count(1)


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """What an API server adds: names from generateName, the namespace from the URL, uid,
    creationTimestamp, generation (bumped when anything but metadata and status changes),
    resourceVersion (and 422 for a failed JSON-patch test of it), and a status subresource (a
    patch of /status changes only the status, a patch of the object never does). Server-side
    apply creates a missing object; `applies` records each apply's field manager and force."""

    applies: list[tuple[str | None, str | None]] = attrs.field(factory=list)

    async def _handle(self, request: kmock.Request) -> Any:
        data = request.data
        if _is_apply(request) and isinstance(data, dict):
            self.applies.append((request.params.get("fieldManager"), request.params.get("force")))
            self._create_on_apply(request, data)
        if request.resource is not None and isinstance(data, list) and request.name is not None:
            self._json_patch(request, data)
        if request.resource is not None and isinstance(data, dict):
            metadata = data.setdefault("metadata", {})
            metadata["resourceVersion"] = str(next(_versions))
            if request.action == kmock.action.CREATE:
                if "name" not in metadata and "generateName" in metadata:
                    metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
                if request.namespace is not None:
                    metadata["namespace"] = request.namespace
                metadata.setdefault("uid", str(uuid.uuid4()))
                metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                metadata["generation"] = 1
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._versioned_update(request, data)
        return await super()._handle(request)

    def _create_on_apply(self, request: kmock.Request, data: Body) -> None:
        """Server-side apply creates what is missing (kmock's PATCH would answer 404): the
        object is stored as a POST would store it, then the PATCH applies it (a no-op)."""
        key = _key(request)
        if key in self.objects and not self.objects[key].deleted:
            return
        created = copy.deepcopy(data)
        metadata = created.setdefault("metadata", {})
        metadata["namespace"] = request.namespace
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata["generation"] = 1
        metadata["resourceVersion"] = str(next(_versions))
        self.objects[key] = created

    def _json_patch(self, request: kmock.Request, data: list[Body]) -> None:
        """A failed `test` op is a 422, as Kopf expects (it then re-reads and retries)."""
        key = _key(request)
        if key not in self.objects or self.objects[key].deleted:
            return
        try:
            jsonpatch.apply_patch(self.objects[key].raw, data)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        path = "/metadata/resourceVersion"
        data.append({"op": "replace", "path": path, "value": str(next(_versions))})

    def _versioned_update(self, request: kmock.Request, data: Body) -> None:
        key = _key(request)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].raw
        if request.subresource == "status":
            for field in [k for k in data if k not in ("status", "metadata")]:
                del data[field]
            return
        data.pop("status", None)
        if _content(_merge(copy.deepcopy(current), data)) != _content(current):
            data["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1


def _is_apply(request: kmock.Request) -> bool:
    content_type = {k.lower(): v for k, v in request.headers.items()}.get("content-type", "")
    return request.name is not None and content_type.startswith("application/apply-patch")


def _key(request: kmock.Request) -> tuple[kmock.resource, str | None, str]:
    assert request.resource is not None and request.name is not None
    return (request.resource, request.namespace, request.name)


def _content(obj: Body) -> Body:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _merge(target: Body, patch: Body) -> Body:
    """RFC 7386, as the emulator applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def declare_resources(cluster: kmock.KubernetesEmulator) -> None:
    """What Kopf needs to discover and watch Sagas, and every kind the operator touches."""
    info = kmock.ResourceInfo
    rw = ["get", "list", "watch", "create", "patch", "update", "delete"]
    cluster.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=rw)
    cluster.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=rw
    )
    cluster.resources[SAGAS] = info(kind="Saga", namespaced=True, verbs=rw, subresources=["status"])
    cluster.resources[TOPICS] = info(
        kind="KafkaTopic", namespaced=True, verbs=rw, subresources=["status"]
    )
    cluster.resources[DEPLOYMENTS] = info(
        kind="Deployment", namespaced=True, verbs=rw, subresources=["status"]
    )
    cluster.resources[USERS] = info(
        kind="KafkaUser", namespaced=True, verbs=rw, subresources=["status"]
    )
    cluster.resources[BUDGETS] = info(kind="PodDisruptionBudget", namespaced=True, verbs=rw)
    cluster.resources[SERVICES] = info(kind="Service", namespaced=True, verbs=rw)
    cluster.resources[CONFIG_MAPS] = info(kind="ConfigMap", namespaced=True, verbs=rw)
    cluster.resources[EVENTS] = info(kind="Event", namespaced=True, verbs=rw)
    crd = yaml.safe_load(CRD_YAML.read_text())
    cluster.objects[
        "apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"]
    ] = crd
    cluster.objects["v1/namespaces", None, NAMESPACE] = {"metadata": {"name": NAMESPACE}}


# -- reading the cluster -----------------------------------------------------------------------


def objects(cluster: kmock.KubernetesEmulator, resource: str) -> dict[str, Body]:
    """The live objects of one resource in the test namespace, by name."""
    wanted = kmock.resource(resource)
    return {
        name: copy.deepcopy(obj.raw)
        for (res, namespace, name), obj in cluster.objects.items()
        if res == wanted and namespace == NAMESPACE and not obj.deleted
    }


def saga(cluster: kmock.KubernetesEmulator, name: str = "order") -> Body | None:
    return objects(cluster, SAGAS).get(name)


def condition(body: Body | None, kind: str) -> Body:
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def event_reasons(cluster: kmock.KubernetesEmulator) -> list[str]:
    return [event.get("reason", "") for event in objects(cluster, EVENTS).values()]


def events(cluster: kmock.KubernetesEmulator) -> list[Body]:
    return list(objects(cluster, EVENTS).values())


async def eventually(
    check: Callable[[], T | None], within: float = 20.0, what: str = "the condition"
) -> T:
    """Poll until `check()` returns something truthy (and return it), or fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


# -- acting as Strimzi and the Deployment controller -------------------------------------------


def _observed(obj: Body) -> bool:
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


def mark_ready(cluster: kmock.KubernetesEmulator, resource: str, ready: bool = True) -> None:
    """What Strimzi's Topic and User Operators report once a topic or a user is as specified."""
    for name, obj in objects(cluster, resource).items():
        was_ready = condition(obj, "Ready").get("status") == "True"
        if _observed(obj) and was_ready == ready:
            continue
        status: Body = {
            "observedGeneration": obj["metadata"]["generation"],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    **({} if ready else {"reason": "KafkaError", "message": "broker unavailable"}),
                }
            ],
        }
        if resource == TOPICS:
            status["topicName"] = obj["spec"].get("topicName", name)
        cluster.objects[resource, NAMESPACE, name].patch({"status": status})


def mark_topics_ready(cluster: kmock.KubernetesEmulator, ready: bool = True) -> None:
    mark_ready(cluster, TOPICS, ready)


def mark_deployments_ready(cluster: kmock.KubernetesEmulator) -> None:
    """What the Deployment controller reports once every replica is updated and ready."""
    for name, deployment in objects(cluster, DEPLOYMENTS).items():
        replicas = deployment["spec"]["replicas"]
        if _observed(deployment) and deployment["status"].get("readyReplicas") == replicas:
            continue
        status = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        cluster.objects[DEPLOYMENTS, NAMESPACE, name].patch({"status": status})


def order_saga(**spec_changes: Any) -> Body:
    document: Body = yaml.safe_load(ORDER_YAML.read_text())
    document["spec"].update(spec_changes)
    return document


# -- the API, as kubectl would use it -----------------------------------------------------------


class Api:
    def __init__(self, cluster: kmock.KubernetesEmulator) -> None:
        self.client = httpx.AsyncClient(base_url=str(cluster.url), timeout=5)

    @staticmethod
    def _path(resource: str, name: str | None = None) -> str:
        ref = kmock.resource(resource)
        root = "/api/v1" if ref.group == "" else f"/apis/{ref.group}/{ref.version}"
        path = f"{root}/namespaces/{NAMESPACE}/{ref.plural}"
        return f"{path}/{name}" if name else path

    async def create(self, resource: str, body: Body) -> Body:
        response = await self.client.post(self._path(resource), json=body)
        response.raise_for_status()
        return dict(response.json())

    async def patch(self, resource: str, name: str, body: Body) -> Body:
        headers = {"Content-Type": "application/merge-patch+json"}
        response = await self.client.patch(self._path(resource, name), json=body, headers=headers)
        response.raise_for_status()
        return dict(response.json())

    async def delete(self, resource: str, name: str) -> None:
        response = await self.client.delete(self._path(resource, name))
        response.raise_for_status()

    async def close(self) -> None:
        await self.client.aclose()


# -- the operator ------------------------------------------------------------------------------


def operator_config(
    cluster: kmock.KubernetesEmulator, summary_url: str, **changes: Any
) -> OperatorConfig:
    return OperatorConfig(
        kube_server=str(cluster.url).rstrip("/"),
        namespaces=NAMESPACE,
        resync_interval_s=0.3,
        counts_interval_s=0.3,
        retry_backoff_s=0.3,
        request_timeout_s=5,
        summary_url=summary_url,
        summary_timeout_s=1,
        **changes,
    )


@contextlib.asynccontextmanager
async def running(config: OperatorConfig) -> AsyncIterator[None]:
    """The real Kopf runtime until the block ends, in a thread with its own event loop (as in
    its own process: Kopf cancels, at exit, every task of its loop it did not start)."""
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def operate() -> None:
        try:
            kopf.run(
                registry=make_registry(config),
                namespaces=[NAMESPACE],
                standalone=True,
                stop_flag=stop,
                ready_flag=ready,
            )
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=operate, name="operator", daemon=True)
    thread.start()
    try:
        await eventually(ready.is_set, within=15, what="the operator to start")
        if failures:
            raise failures[0]
        yield
    finally:
        stop.set()
        await eventually(lambda: not thread.is_alive(), within=15, what="the operator to stop")


# The fields of Strimzi's KafkaTopic (kafka.strimzi.io/v1beta2) as its CRD types them, with
# unknown fields refused (the API server would prune them silently), plus what the Topic
# Operator needs: the strimzi.io/cluster label and a Kubernetes resource name.
STRIMZI_KAFKA_TOPIC = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"enum": ["kafka.strimzi.io/v1beta2", "kafka.strimzi.io/v1"]},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "name": {
                    "type": "string",
                    "maxLength": 253,
                    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                },
                "labels": {
                    "type": "object",
                    "required": ["strimzi.io/cluster"],
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object"},
                "topicName": {"type": "string"},
            },
        },
    },
}
