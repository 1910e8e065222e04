"""What a service's containers read: the environment variables (its database, Kafka, the saga,
tracing) and the Kafka secrets mounted as files (the CA, a client certificate).

The same for the `migrate` init container, the relay sidecar and the app (pods.py).
"""

from __future__ import annotations

from sagaline.domain.definition import SagaDefinition, StepSpec
from sagaline_operator.manifests.common import Body, Unit

SAGA_DIR = "/etc/sagaline"
SAGA_KEY = "saga.yaml"
KAFKA_CA_DIR = "/etc/sagaline/kafka-ca"
KAFKA_USER_DIR = "/etc/sagaline/kafka-user"
STEPS_VARIABLE = "SAGALINE_STEPS"  # sagaline.registration's


def secret_env(name: str, secret: str, key: str) -> Body:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def service_env(unit: Unit, definition: SagaDefinition) -> list[Body]:
    """What every container of the service's pod reads: its database, Kafka, the saga."""
    database = unit.spec.database
    if database is None:
        raise ValueError(f"{unit.service}: database.secretName is required on Kubernetes")
    return [
        *declaration_env(unit),
        secret_env("DATABASE_URL", database.secret_name, database.secret_key),
        {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": definition.spec.kafka.bootstrap_servers},
        *_kafka_security_env(unit, definition),
        {"name": "SAGA_FILE", "value": f"{SAGA_DIR}/{SAGA_KEY}"},
        {"name": "SAGALINE_CREATE_TOPICS", "value": "false"},  # Strimzi owns the topics
    ]


def declaration_env(unit: Unit) -> list[Body]:
    """Where a step's declaration is, when the Saga names it (`steps[].declaration`): the
    service's `serve`, `relay` and `migrate` find it by SAGALINE_STEPS; unset, by its entry
    point."""
    if not isinstance(unit.spec, StepSpec) or unit.spec.declaration is None:
        return []
    return [{"name": STEPS_VARIABLE, "value": unit.spec.declaration}]


def tracing_env(definition: SagaDefinition, service_name: str) -> list[Body]:
    """The standard OpenTelemetry variables (sagaline/telemetry/tracing.py reads them)."""
    tracing = definition.spec.tracing
    if tracing is None:
        return []
    return [
        {"name": "OTEL_TRACES_EXPORTER", "value": "otlp"},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": tracing.otlp_endpoint},
        {"name": "OTEL_SERVICE_NAME", "value": service_name},
    ]


def _kafka_security_env(unit: Unit, definition: SagaDefinition) -> list[Body]:
    """TLS and SASL settings (sagaline/settings.py reads them): the CA from the Secret
    the spec names, the credentials from the Secret Strimzi writes for the service's user."""
    kafka = definition.spec.kafka
    authentication = kafka.authentication.type if kafka.authentication else None
    tls, sasl = kafka.tls is not None, authentication == "scram-sha-512"
    if not (tls or sasl):
        return []  # PLAINTEXT, the clients' default
    protocol = ("SASL_SSL" if tls else "SASL_PLAINTEXT") if sasl else "SSL"
    env: list[Body] = [{"name": "KAFKA_SECURITY_PROTOCOL", "value": protocol}]
    if kafka.tls is not None:
        env.append({"name": "KAFKA_SSL_CAFILE", "value": f"{KAFKA_CA_DIR}/ca.crt"})
    if sasl:
        env += [
            {"name": "KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
            {"name": "KAFKA_SASL_USERNAME", "value": unit.name},
            secret_env("KAFKA_SASL_PASSWORD", unit.name, "password"),
        ]
    if authentication == "tls":
        env += [
            {"name": "KAFKA_SSL_CERTFILE", "value": f"{KAFKA_USER_DIR}/user.crt"},
            {"name": "KAFKA_SSL_KEYFILE", "value": f"{KAFKA_USER_DIR}/user.key"},
        ]
    return env


def kafka_volumes(unit: Unit, definition: SagaDefinition) -> list[tuple[Body, Body]]:
    """(volume, mount) pairs of the Kafka CA and of a client certificate."""
    kafka = definition.spec.kafka
    pairs = []
    if kafka.tls is not None:
        items = [{"key": kafka.tls.ca_secret_key, "path": "ca.crt"}]
        secret = {"secretName": kafka.tls.ca_secret_name, "items": items}
        pairs.append(
            (
                {"name": "kafka-ca", "secret": secret},
                {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
            )
        )
    if kafka.authentication is not None and kafka.authentication.type == "tls":
        items = [{"key": key, "path": key} for key in ("user.crt", "user.key")]
        pairs.append(
            (
                {"name": "kafka-user", "secret": {"secretName": unit.name, "items": items}},
                {"name": "kafka-user", "mountPath": KAFKA_USER_DIR, "readOnly": True},
            )
        )
    return pairs
