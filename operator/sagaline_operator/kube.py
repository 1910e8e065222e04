"""A small, uniform layer over the kubernetes client: objects are plain dicts.

The kubernetes client carries the connection (in-cluster service account, kubeconfig, or a bare
server URL), authentication and TLS; this layer speaks the REST conventions every kind shares, so
that ConfigMaps, Deployments, Services, KafkaTopics and Sagas go through the same five calls.
Updates are JSON merge patches (RFC 7386): lists are replaced whole, so a removed container or
environment variable really goes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

Body = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    api_version: str  # "v1", "apps/v1", "kafka.strimzi.io/v1beta2"
    kind: str
    plural: str

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{root}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SERVICE = Kind("v1", "Service", "services")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")


def kafka_topic_kind(api_version: str) -> Kind:
    return Kind(api_version, "KafkaTopic", "kafkatopics")


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

    def close(self) -> None:
        self.api.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Body | None = None,
        content_type: str = "application/json",
    ) -> Body:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=self.timeout_s)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason, body=data)
        return json.loads(data) if data else {}

    def get(self, kind: Kind, namespace: str, name: str) -> Body | None:
        try:
            return self._call("GET", kind.path(namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str, labels: dict[str, str]) -> list[Body]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        answer = self._call("GET", kind.path(namespace), query=[("labelSelector", selector)])
        items: list[Body] = answer.get("items") or []
        # Not every server filters by label (the test emulator does not): filter here too.
        return [item for item in items if _has_labels(item, labels)]

    def create(self, kind: Kind, namespace: str, body: Body) -> Body:
        return self._call("POST", kind.path(namespace), body=body)

    def patch(
        self, kind: Kind, namespace: str, name: str, body: Body, subresource: str | None = None
    ) -> Body:
        path = kind.path(namespace, name, subresource)
        return self._call("PATCH", path, body=body, content_type=MERGE_PATCH)

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete in the background (dependents go after); False if it was already gone."""
        try:
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
            self._call("DELETE", kind.path(namespace, name), body=body)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _has_labels(item: Body, labels: dict[str, str]) -> bool:
    actual = item.get("metadata", {}).get("labels") or {}
    return all(actual.get(key) == value for key, value in labels.items())
