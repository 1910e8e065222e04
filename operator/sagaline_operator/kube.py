"""The operator's calls to the Kubernetes API, through the kubernetes client's dynamic client.

Objects are plain dicts in and out. The children of a Saga are written with server-side apply
under the operator's own field manager: the operator states the whole of what it wants, the API
server merges it with what others own (a `kubectl rollout restart` annotation, an HPA's
replicas) and removes what the operator stopped wanting (a dropped environment variable). A
refusal or a status update is a JSON merge patch of the fields it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient, Resource
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from sagaline_operator.config import FIELD_MANAGER

Body = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    api_version: str  # "v1", "apps/v1", "kafka.strimzi.io/v1beta2"
    kind: str


CONFIG_MAP = Kind("v1", "ConfigMap")
SERVICE = Kind("v1", "Service")
DEPLOYMENT = Kind("apps/v1", "Deployment")
DISRUPTION_BUDGET = Kind("policy/v1", "PodDisruptionBudget")


def kafka_topic_kind(api_version: str) -> Kind:
    return Kind(api_version, "KafkaTopic")


def kafka_user_kind(api_version: str) -> Kind:
    return Kind(api_version, "KafkaUser")


def configuration(server: str | None) -> client.Configuration:
    """A bare server URL, else the in-cluster service account, else the kubeconfig."""
    cfg = client.Configuration()
    if server:
        cfg.host = server
        return cfg
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    return cfg


class Kube:
    def __init__(self, api: client.ApiClient, timeout_s: float) -> None:
        self.api = api
        self.timeout_s = timeout_s
        self._dynamic: DynamicClient | None = None
        # Plain dicts back (the dynamic client's ResourceInstance wraps them), and a timeout.
        self._options: Body = {"serialize": False, "_request_timeout": timeout_s}

    def close(self) -> None:
        self.api.close()

    @property
    def dynamic(self) -> DynamicClient:
        """Made on first use: its discovery needs the API server, which login does not."""
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def _resource(self, kind: Kind) -> Resource:
        return self.dynamic.resources.get(api_version=kind.api_version, kind=kind.kind)

    def serves(self, kind: Kind) -> bool:
        """Whether the API server knows the kind (a CRD such as Strimzi's may be missing)."""
        try:
            self._resource(kind)
        except ResourceNotFoundError:
            return False
        return True

    def get(self, kind: Kind, namespace: str, name: str) -> Body | None:
        try:
            found = self._resource(kind).get(name=name, namespace=namespace, **self._options)
        except NotFoundError:
            return None
        return _plain(found)

    def list(self, kind: Kind, namespace: str, labels: dict[str, str]) -> list[Body]:
        """Objects with all these labels; none of a kind the server does not serve."""
        if not self.serves(kind):
            return []
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        answer = _plain(
            self._resource(kind).get(namespace=namespace, label_selector=selector, **self._options)
        )
        items: list[Body] = answer.get("items") or []
        # Not every server filters by label (the test emulator does not): filter here too.
        return [item for item in items if _has_labels(item, labels)]

    def apply(self, kind: Kind, namespace: str, body: Body) -> Body:
        """Server-side apply: create or update to what `body` says, as the operator's manager.

        Conflicts are forced: the operator owns its children's fields, so a hand edit of one of
        them is repaired on the next pass rather than blocking it.
        """
        applied = self._resource(kind).server_side_apply(
            body=body,
            name=body["metadata"]["name"],
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            **self._options,
        )
        return _plain(applied)

    def patch(
        self, kind: Kind, namespace: str, name: str, body: Body, subresource: str | None = None
    ) -> Body:
        """A JSON merge patch (RFC 7386) of the object or of its subresource (`status`)."""
        resource = self._resource(kind)
        target = resource.subresources[subresource] if subresource else resource
        patched = target.patch(
            body=body,
            name=name,
            namespace=namespace,
            content_type=MERGE_PATCH,
            field_manager=FIELD_MANAGER,
            **self._options,
        )
        return _plain(patched)

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete in the background (dependents go after); False if it was already gone."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self._resource(kind).delete(
                name=name, namespace=namespace, body=options, **self._options
            )
        except NotFoundError:
            return False
        return True


def _plain(response: Any) -> Body:
    """The JSON body of an unserialized response of the dynamic client."""
    data = response.data
    return dict(json.loads(data)) if data else {}


def _has_labels(item: Body, labels: dict[str, str]) -> bool:
    actual = item.get("metadata", {}).get("labels") or {}
    return all(actual.get(key) == value for key, value in labels.items())
