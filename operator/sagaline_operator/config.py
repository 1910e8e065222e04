"""The operator's own settings, read from the environment (prefix `SAGALINE_OPERATOR_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GROUP = "sagaline.io"
VERSION = "v1alpha1"
PLURAL = "sagas"
FIELD_MANAGER = "sagaline-operator"


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAGALINE_OPERATOR_", extra="ignore")

    # Where Sagas are watched: one namespace (the operator's own, from the downward API), a
    # comma-separated list, or every namespace when `clusterwide` (which needs a ClusterRole).
    namespaces: str = ""
    clusterwide: bool = False

    # The API version of Strimzi's KafkaTopic (`kafka.strimzi.io/v1` on Strimzi ≥ 0.49).
    strimzi_api_version: str = Field("kafka.strimzi.io/v1beta2", pattern=r"^kafka\.strimzi\.io/v")

    # The periodic re-check that repairs drift and refreshes the readiness conditions.
    resync_interval_s: float = Field(30.0, gt=0)
    # How often the saga counts are read from the orchestrator's API.
    counts_interval_s: float = Field(15.0, gt=0)
    # Where that API is: formatted with the orchestrator's Service name, namespace and port.
    summary_url: str = "http://{service}.{namespace}.svc:{port}/sagas/summary"
    summary_timeout_s: float = Field(2.0, gt=0)
    # Retry delay of a reconciliation that failed (an unreachable API server, a conflict).
    retry_backoff_s: float = Field(5.0, gt=0)
    # Timeout of one request to the Kubernetes API.
    request_timeout_s: float = Field(15.0, gt=0)

    # An API server to talk to without credentials (`kubectl proxy`, a test emulator). Unset:
    # in-cluster service account, else the kubeconfig.
    kube_server: str | None = None

    # The operator's liveness endpoint (Kopf's), probed by its Deployment.
    # Port 9180: not one of the services' (8080-8083), which may run on the same host.
    liveness_endpoint: str = "http://0.0.0.0:9180/healthz"

    @property
    def namespace_list(self) -> list[str]:
        return [ns.strip() for ns in self.namespaces.split(",") if ns.strip()]
