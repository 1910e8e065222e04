"""Alembic migrations of one service's database: the shared tables plus the service's own."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from services.common.db import sync_url

COMMON = Path(__file__).resolve().parent
SERVICES = COMMON.parent


def version_locations(service: str, *, participant: bool) -> list[Path]:
    locations = [COMMON / "migrations", SERVICES / service / "migrations"]
    if participant:
        locations.insert(1, COMMON / "participant_migrations")
    return locations


def alembic_config(database_url: str, service: str, *, participant: bool) -> Config:
    config = Config()
    config.set_main_option("script_location", str(COMMON / "alembic"))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        ":".join(str(p) for p in version_locations(service, participant=participant)),
    )
    config.attributes["url"] = sync_url(database_url)
    return config


def upgrade(database_url: str, service: str, *, participant: bool) -> None:
    command.upgrade(alembic_config(database_url, service, participant=participant), "heads")
