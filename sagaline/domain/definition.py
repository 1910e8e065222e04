"""The `Saga` resource: one format for the operator and for `sagaline up`.

The orchestrator, the participants and the CLI all derive topics, step order and timeouts from
this model, read from the same YAML that the Kubernetes operator reconciles.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from sagaline.domain.backoff import resend_horizon_s
from sagaline.domain.messages import SagaTopics

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
DNS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# A service's declaration, `module:object` (each a dotted Python name): what `--step` and
# SAGALINE_STEPS name (sagaline.registration checks its references against it too).
REFERENCE_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
# A Kubernetes resource quantity (`500m`, `1`, `256Mi`, `1.5Gi`); whole numbers may be integers.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
WEEK_MS = 7 * 24 * 3600 * 1000
# The upper bounds of the re-send settings, the Saga's and each step's alike.
TIMEOUT_MAX_S = 3600
ATTEMPTS_MAX = 100
COMPENSATION_ATTEMPTS_MAX = 1000

Quantity = Annotated[
    str,
    BeforeValidator(lambda value: str(value) if isinstance(value, int | float) else value),
    StringConstraints(pattern=QUANTITY_PATTERN),
]


class Execution(StrEnum):
    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class DatabaseRef(_Spec):
    """The Secret holding a service's database URL (on Kubernetes; `sagaline up` ignores it)."""

    secret_name: str = Field(alias="secretName", pattern=DNS_NAME_PATTERN, max_length=253)
    secret_key: str = Field("uri", alias="secretKey", pattern=SECRET_KEY_PATTERN, max_length=253)


class SecretRef(_Spec):
    """A key of a Secret in the Saga's namespace."""

    secret_name: str = Field(alias="secretName", pattern=DNS_NAME_PATTERN, max_length=253)
    secret_key: str = Field("token", alias="secretKey", pattern=SECRET_KEY_PATTERN, max_length=253)


class KafkaTls(_Spec):
    """Connect to Kafka with TLS, trusting the CA in this Secret (Strimzi's
    `<cluster>-cluster-ca-cert`)."""

    ca_secret_name: str = Field(alias="caSecretName", pattern=DNS_NAME_PATTERN, max_length=253)
    ca_secret_key: str = Field(
        "ca.crt", alias="caSecretKey", pattern=SECRET_KEY_PATTERN, max_length=253
    )


class KafkaAuthentication(_Spec):
    """Per service a Strimzi KafkaUser of this type, with least-privilege ACLs."""

    type: Literal["scram-sha-512", "tls"]


class KafkaSpec(_Spec):
    cluster: str = Field("sagaline", pattern=DNS_LABEL_PATTERN, max_length=63)
    bootstrap_servers: str = Field("sagaline-kafka-bootstrap:9092", alias="bootstrapServers")
    partitions: int = Field(6, ge=1, le=1000)
    replicas: int = Field(3, ge=1, le=10)
    min_insync_replicas: int | None = Field(None, ge=1, le=10, alias="minInsyncReplicas")
    retention_ms: int = Field(WEEK_MS, ge=60_000, alias="retentionMs")
    tls: KafkaTls | None = None
    authentication: KafkaAuthentication | None = None

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSpec:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replicas:
            raise ValueError(
                f"minInsyncReplicas ({self.min_insync_replicas}) cannot exceed replicas "
                f"({self.replicas}): no write could ever be acknowledged"
            )
        if self.authentication is not None and self.authentication.type == "tls" and not self.tls:
            raise ValueError(
                "authentication type tls (client certificates) needs kafka.tls: set "
                "kafka.tls.caSecretName"
            )
        return self

    @property
    def effective_min_insync_replicas(self) -> int:
        """`min.insync.replicas`: as set, else one less than the replicas, at most 2, at least 1."""
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return max(1, min(2, self.replicas - 1))


class Quantities(_Spec):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Spec):
    """A container's requests and limits (unset: the operator's manifests/pods.py defaults)."""

    requests: Quantities | None = None
    limits: Quantities | None = None


class ServiceSpec(_Spec):
    replicas: int = Field(1, ge=0, le=100)
    database: DatabaseRef | None = None
    resources: Resources | None = None  # the app container
    relay_resources: Resources | None = Field(None, alias="relayResources")


class InitiatorSpec(ServiceSpec):
    """The service that starts the sagas by `saga.start` (the order service runs `order`).

    Left out, a Saga has the order service as its initiator, as it always had; `enabled: false`
    says it has none: its sagas start only by the orchestrator's `POST /sagas`, and no initiator
    service runs (docs/design.md, "The Saga resource")."""

    enabled: bool = True
    name: str = Field("order", pattern=NAME_PATTERN)


Argument = Annotated[str, StringConstraints(max_length=4096)]


class StepSpec(ServiceSpec):
    """A step: the service `sagaline serve <name>` runs, and what it may set for itself (unset:
    the Saga's; `SagaSpec.image_of` and `SagaSpec.timing` resolve them)."""

    name: str = Field(pattern=NAME_PATTERN)
    # The step's container: its own image (its relay and migrations run in it too), and the
    # app's command and arguments (unset: `sagaline serve <name>` and its options).
    image: str | None = Field(None, min_length=1, max_length=1024)
    command: list[Argument] | None = Field(None, min_length=1, max_length=64)
    args: list[Argument] | None = Field(None, max_length=64)
    # Where the step's declaration is (`module:object`, passed to its pod as SAGALINE_STEPS);
    # unset: the entry point of its name in the group `sagaline.services`.
    declaration: str | None = Field(None, pattern=REFERENCE_PATTERN, max_length=1024)
    timeout_seconds: float | None = Field(None, gt=0, le=TIMEOUT_MAX_S, alias="timeoutSeconds")
    max_attempts: int | None = Field(None, ge=1, le=ATTEMPTS_MAX, alias="maxAttempts")
    compensation_max_attempts: int | None = Field(
        None, ge=1, le=COMPENSATION_ATTEMPTS_MAX, alias="compensationMaxAttempts"
    )


@dataclass(frozen=True)
class StepTiming:
    """How one step's command and compensation are re-sent: the effective values."""

    timeout_s: float
    max_attempts: int
    compensation_max_attempts: int

    def resend_horizon_s(self) -> float:
        """The longest its command or its compensation is re-sent for."""
        attempts = max(self.max_attempts, self.compensation_max_attempts)
        return resend_horizon_s(self.timeout_s, attempts)


class TracingSpec(_Spec):
    """Where every service and relay sends its spans (OTLP over HTTP); unset, tracing is off."""

    otlp_endpoint: str = Field(
        alias="otlpEndpoint", pattern=r"^https?://[^\s]+$", min_length=8, max_length=2048
    )


class SagaSpec(_Spec):
    execution: Execution = Execution.SEQUENTIAL
    step_timeout_seconds: float = Field(10, gt=0, le=TIMEOUT_MAX_S, alias="stepTimeoutSeconds")
    max_attempts: int = Field(5, ge=1, le=ATTEMPTS_MAX, alias="maxAttempts")
    # Undoing must outlast faults far longer than trying: a compensation given up leaves an
    # effect standing (the saga ends FAILED), so by default it is re-sent for much longer.
    compensation_max_attempts: int = Field(
        20, ge=1, le=COMPENSATION_ATTEMPTS_MAX, alias="compensationMaxAttempts"
    )
    kafka: KafkaSpec = KafkaSpec()
    image: str = Field("sagaline:dev", min_length=1)
    # The services' API token (SAGALINE_API_TOKEN): every mutating request must carry it.
    api_token: SecretRef | None = Field(None, alias="apiToken")
    tracing: TracingSpec | None = None
    topic_deletion_policy: Literal["retain", "delete"] = Field(
        "retain", alias="topicDeletionPolicy"
    )
    orchestrator: ServiceSpec = ServiceSpec()
    initiator: InitiatorSpec = InitiatorSpec()
    steps: list[StepSpec] = Field(min_length=1, max_length=20)

    @field_validator("initiator", mode="before")
    @classmethod
    def _no_null_initiator(cls, value: object) -> object:
        if value is None:  # on Kubernetes a null is pruned and defaulted: the order service
            raise ValueError(
                "null is not a Saga without an initiator: write initiator: {enabled: false} "
                "(left out, the order service starts the sagas)"
            )
        return value

    @model_validator(mode="after")
    def _unique_step_names(self) -> SagaSpec:
        names = [step.name for step in self.steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"step names must be unique, repeated: {', '.join(duplicates)}")
        clashes = [n for n in names if n in ("orchestrator", self.initiator_name)]
        if clashes:
            raise ValueError(f"a step may not be named like a service: {', '.join(clashes)}")
        return self

    @property
    def initiator_name(self) -> str | None:
        """The initiator service's name; None when the Saga has none (`enabled: false`)."""
        return self.initiator.name if self.initiator.enabled else None

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no step {name!r}")

    # The effective values of a step: its own, else the Saga's. Resolved here only.

    def timing(self, step: StepSpec) -> StepTiming:
        """The step's time-out and attempts: its own, else the Saga's."""
        timeout = step.timeout_seconds
        attempts = step.max_attempts
        compensation_attempts = step.compensation_max_attempts
        return StepTiming(
            timeout_s=self.step_timeout_seconds if timeout is None else timeout,
            max_attempts=self.max_attempts if attempts is None else attempts,
            compensation_max_attempts=(
                self.compensation_max_attempts
                if compensation_attempts is None
                else compensation_attempts
            ),
        )

    def timings(self) -> dict[str, StepTiming]:
        return {step.name: self.timing(step) for step in self.steps}

    def image_of(self, step: StepSpec) -> str:
        """The image of the step's pod (app, relay and migrations): its own, else the Saga's."""
        return step.image or self.image


class Metadata(_Spec):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME_PATTERN)


class SagaDefinition(_Spec):
    """A parsed `Saga` resource (`sagaline.io/v1alpha1`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: Literal["sagaline.io/v1alpha1"] = Field("sagaline.io/v1alpha1", alias="apiVersion")
    kind: Literal["Saga"] = "Saga"
    metadata: Metadata
    spec: SagaSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def resend_horizon_s(self) -> float:
        """The longest a command or compensation of this saga is re-sent for: that of the step
        re-sent the longest (each with its own time-out and attempts)."""
        return max(timing.resend_horizon_s() for timing in self.spec.timings().values())

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.spec.steps]

    @property
    def saga_topics(self) -> SagaTopics:
        """Its topics by role (`sagaline.domain.messages.SagaTopics`): the order saga's keep
        the seed's names, any other saga's start with `<saga>.`."""
        return SagaTopics(self.name)

    def topics(self) -> list[str]:
        """The eleven topics (for two steps): three of the orchestrator, four per step."""
        return self.saga_topics.all(self.step_names)

    def with_spec(self, **changes: object) -> SagaDefinition:
        """A copy with spec fields changed (by alias), validated like the file was."""
        document = self.model_dump(by_alias=True)
        document["spec"].update(changes)
        return SagaDefinition.model_validate(document)

    def with_execution(self, execution: Execution | str) -> SagaDefinition:
        return self.with_spec(execution=str(Execution(execution)))

    def with_timing(self, step_timeout_seconds: float, max_attempts: int) -> SagaDefinition:
        """A copy whose every step has this time-out and these attempts (the steps' own
        `timeoutSeconds` and `maxAttempts` give way; their compensation attempts stay)."""
        document = self.model_dump(by_alias=True)
        for step in document["spec"]["steps"]:
            step.pop("timeoutSeconds", None)
            step.pop("maxAttempts", None)
        document["spec"].update(stepTimeoutSeconds=step_timeout_seconds, maxAttempts=max_attempts)
        return SagaDefinition.model_validate(document)


def consumer_group(saga: str, service: str) -> str:
    """The Kafka consumer group of one service of a saga (its KafkaUser may read only this)."""
    return f"sagaline-{saga}-{service}"


def load_definition(path: str | Path) -> SagaDefinition:
    """Read a `Saga` YAML file; raises a ValueError naming the file and the bad field."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read saga definition {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"saga definition {path} is not valid YAML: {exc}") from exc
    try:
        return SagaDefinition.model_validate(document)
    except ValueError as exc:
        raise ValueError(f"invalid saga definition {path}: {exc}") from exc


def default_definition_path() -> Path:
    """`k8s/sagas/order.yaml` of the working directory, else of the source checkout."""
    candidates = [
        Path.cwd() / "k8s" / "sagas" / "order.yaml",
        Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]
