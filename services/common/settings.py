"""Process settings, read from the environment (pydantic-settings).

The two connection settings use the names every Kafka and database tool knows
(`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`); everything else is prefixed `SAGALINE_`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.definition import default_definition_path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAGALINE_", extra="ignore")

    database_url: str = Field(
        "sqlite:///sagaline.db",
        validation_alias=AliasChoices("DATABASE_URL", "SAGALINE_SERVICE_DATABASE_URL"),
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "SAGALINE_BOOTSTRAP_SERVERS"),
    )
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
    consumer_fetch_wait_ms: int = Field(20, ge=1, le=5_000)

    relay_batch_size: int = Field(500, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(0.02, gt=0, le=10)
    relay_listen_timeout_s: float = Field(1.0, gt=0, le=60)
    outbox_retention_s: float = Field(3600, ge=0)
    inbox_retention_s: float = Field(7 * 24 * 3600, ge=0)
    purge_interval_s: float = Field(60, gt=0)

    timer_interval_s: float = Field(0.25, gt=0, le=60)
    start_timeout_s: float | None = None  # order-service re-send of saga.start; derived if unset
    log_level: str = "INFO"
