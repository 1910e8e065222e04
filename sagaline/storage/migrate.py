"""Alembic migrations of one service's database: the shared tables plus the service's own.

The service's own revisions come from its declaration (`sagaline.registration.ServicePlugin`):
this module is told their directory, and never looks for a service by name.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from sagaline.storage.db import sync_url

STORAGE = Path(__file__).resolve().parent


def version_locations(own: Path | None, *, participant: bool) -> list[Path]:
    """The shared outbox and inbox revisions, a participant's step outcomes (for a step), then the
    service's own directory (if it has one)."""
    locations = [STORAGE / "migrations"]
    if participant:
        locations.append(STORAGE / "participant_migrations")
    if own is not None:
        locations.append(Path(own))
    return locations


def alembic_config(database_url: str, own: Path | None, *, participant: bool) -> Config:
    config = Config()
    config.set_main_option("script_location", str(STORAGE / "alembic"))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        ":".join(str(p) for p in version_locations(own, participant=participant)),
    )
    config.attributes["url"] = sync_url(database_url)
    return config


def upgrade(database_url: str, own: Path | None, *, participant: bool) -> None:
    command.upgrade(alembic_config(database_url, own, participant=participant), "heads")
