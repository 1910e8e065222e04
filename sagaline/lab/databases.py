"""Where each service's database lives: SQLite files, or databases on one PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from sagaline.services.registry import SERVICES, database_name
from sagaline.storage.db import redact


def database_urls(
    server_url: str | None,
    state_dir: Path,
    *,
    prefix: str = "",
    services: Iterable[str] | Mapping[str, str] = SERVICES,
) -> dict[str, str]:
    """One URL per service: `<server>/<prefix><name>` on PostgreSQL, else a file in state_dir.
    The name: the one `services` maps the service to, if it is a mapping, else
    `services.registry.database_name`."""
    names = (
        dict(services)
        if isinstance(services, Mapping)
        else {service: database_name(service) for service in services}
    )
    if server_url:
        base = make_url(_normalise(server_url))
        return {
            service: base.set(database=f"{prefix}{name}").render_as_string(hide_password=False)
            for service, name in names.items()
        }
    state_dir = Path(state_dir).resolve()
    return {
        service: f"sqlite:///{state_dir / (prefix + name)}.db" for service, name in names.items()
    }


def _normalise(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"--database-url must be a postgresql:// URL, got {redact(url)}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_conninfo(url: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )


def create_missing(urls: dict[str, str]) -> list[str]:
    """Create the PostgreSQL databases that do not exist yet; return their names."""
    created: list[str] = []
    for url in urls.values():
        if make_url(url).get_backend_name() != "postgresql":
            continue
        name = str(make_url(url).database)
        with psycopg.connect(_admin_conninfo(url), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(str(name))
    return created


def terminate_connections(url: str) -> int:
    """Cut every connection to the database `url` names (a fault, as a failover would cause)."""
    with psycopg.connect(_admin_conninfo(url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (make_url(url).database,),
        ).fetchall()
    return sum(1 for (terminated,) in rows if terminated)


def drop(urls: dict[str, str]) -> None:
    for url in urls.values():
        if make_url(url).get_backend_name() != "postgresql":
            continue
        name = str(make_url(url).database)
        with psycopg.connect(_admin_conninfo(url), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
