"""Process settings, read from the environment (pydantic-settings).

The connection settings use the names every Kafka and database tool knows
(`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_SECURITY_PROTOCOL`, ..., `DATABASE_URL`); everything else is
prefixed `SAGALINE_`. Secrets are `SecretStr` and validation errors never echo their input, so a
bad setting cannot print a password.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sagaline.domain.definition import default_definition_path
from sagaline.kafka.brokers import BrokerKind
from sagaline.kafka.security import KafkaSecurity, SaslMechanism, SecurityProtocol


def _kafka(name: str) -> AliasChoices:
    """`KAFKA_<NAME>`, or `SAGALINE_KAFKA_<NAME>`."""
    return AliasChoices(f"KAFKA_{name}", f"SAGALINE_KAFKA_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SAGALINE_", extra="ignore", hide_input_in_errors=True
    )

    database_url: SecretStr = Field(
        SecretStr("sqlite:///sagaline.db"),
        validation_alias=AliasChoices("DATABASE_URL", "SAGALINE_SERVICE_DATABASE_URL"),
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "SAGALINE_BOOTSTRAP_SERVERS"),
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", validation_alias=_kafka("SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, validation_alias=_kafka("SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(None, validation_alias=_kafka("SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias=_kafka("SASL_PASSWORD"))
    kafka_ssl_cafile: Path | None = Field(None, validation_alias=_kafka("SSL_CAFILE"))
    kafka_ssl_certfile: Path | None = Field(None, validation_alias=_kafka("SSL_CERTFILE"))
    kafka_ssl_keyfile: Path | None = Field(None, validation_alias=_kafka("SSL_KEYFILE"))
    kafka_ssl_key_password: SecretStr | None = Field(
        None, validation_alias=_kafka("SSL_KEY_PASSWORD")
    )
    # Every mutating HTTP request needs `Authorization: Bearer <token>` when it is set.
    api_token: SecretStr | None = None
    saga_file: Path = Field(
        default_factory=default_definition_path,
        validation_alias=AliasChoices("SAGA_FILE", "SAGALINE_SAGA_FILE"),
    )
    # Overrides of the saga definition (the demo and tests use them).
    execution: str | None = None
    step_timeout_seconds: float | None = None
    max_attempts: int | None = None

    create_topics: bool = True
    topic_partitions: int | None = None
    topic_replicas: int | None = None

    consumer_batch_size: int = Field(200, ge=1, le=10_000)
    # A consumed message larger than this is dead-lettered unread, and its dead-letter copy is
    # cut to this size (so the copy always fits the broker's limit, 1 MiB by default on Kafka).
    max_message_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Which broker the bootstrap servers lead to: `kafka` (Apache Kafka, Strimzi, Redpanda) or
    # `embedded` (the in-memory broker of `sagaline up`, whose quirks the clients work around).
    broker: BrokerKind = "kafka"
    # How long a fetch waits for records; default: the broker's (500 ms long poll on Kafka).
    consumer_fetch_wait_ms: int | None = Field(None, ge=1, le=5_000)

    relay_batch_size: int = Field(2000, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(0.02, gt=0, le=10)
    relay_listen_timeout_s: float = Field(1.0, gt=0, le=60)
    # SQLite: how long acknowledged rows may wait to be marked published (one write lock then).
    relay_mark_delay_s: float = Field(0.1, ge=0, le=10)
    # The relay's own HTTP port (/metrics, /healthz); 0: none (`sagaline up` runs many relays).
    relay_metrics_port: int = Field(0, ge=0, le=65535)
    outbox_retention_s: float = Field(3600, ge=0)
    inbox_retention_s: float = Field(7 * 24 * 3600, ge=0)
    purge_interval_s: float = Field(60, gt=0)

    timer_interval_s: float = Field(0.25, gt=0, le=60)
    start_timeout_s: float | None = None  # order-service re-send of saga.start; derived if unset
    log_level: str = "INFO"

    @property
    def database(self) -> str:
        """The database URL, password included: for the database driver only, never a log."""
        return self.database_url.get_secret_value()

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_key_password=self.kafka_ssl_key_password,
        )

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Settings:
        self.kafka_security()  # a SASL protocol without its user, say, fails at start
        return self
