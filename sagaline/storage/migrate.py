"""Alembic migrations of one service's database: the shared tables plus the service's own."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from sagaline.storage.db import sync_url

STORAGE = Path(__file__).resolve().parent
# The services' own migrations: sagaline/services (a link to the checkout's services/ folder).
SERVICES = Path(__file__).parents[1] / "services"


def version_locations(service: str, *, participant: bool) -> list[Path]:
    locations = [STORAGE / "migrations", SERVICES / service / "migrations"]
    if participant:
        locations.insert(1, STORAGE / "participant_migrations")
    return locations


def alembic_config(database_url: str, service: str, *, participant: bool) -> Config:
    config = Config()
    config.set_main_option("script_location", str(STORAGE / "alembic"))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        ":".join(str(p) for p in version_locations(service, participant=participant)),
    )
    config.attributes["url"] = sync_url(database_url)
    return config


def upgrade(database_url: str, service: str, *, participant: bool) -> None:
    command.upgrade(alembic_config(database_url, service, participant=participant), "heads")
