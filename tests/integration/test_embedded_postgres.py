"""The PostgreSQL server the project starts itself: it serves both drivers the services use,
keeps its data over a restart, and says what to fix when it cannot start."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sagaline.lab.launchers.postgres import EmbeddedPostgres, PostgresError, unavailable_reason


@pytest.fixture(autouse=True)
def _server_available() -> None:
    """Skipped where the wheel is missing, but never silently on CI."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def asyncpg_url(server: EmbeddedPostgres, database: str) -> str:
    return f"{server.url.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{database}"


async def test_data_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    first = EmbeddedPostgres(data_dir=data_dir)
    second = EmbeddedPostgres(data_dir=data_dir)
    try:
        began = time.monotonic()
        first.start()
        print(f"initdb + start: {time.monotonic() - began:.2f} s")
        assert first.alive()
        assert first.pid in first.pids()

        with psycopg.connect(f"{first.url}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE sagaline_probe")
        with psycopg.connect(f"{first.url}/sagaline_probe") as connection:
            connection.execute("CREATE TABLE kept (id int PRIMARY KEY, note text NOT NULL)")
            connection.execute("INSERT INTO kept VALUES (1, 'by psycopg')")
        engine = create_async_engine(asyncpg_url(first, "sagaline_probe"))
        try:
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO kept VALUES (2, 'by asyncpg: ü')"))
        finally:
            await engine.dispose()

        first.stop()
        assert not first.alive()
        assert (data_dir / "PG_VERSION").exists(), "stop() removed a data_dir it was given"

        began = time.monotonic()
        second.start()
        print(f"restart on the same data dir: {time.monotonic() - began:.2f} s")
        with psycopg.connect(f"{second.url}/sagaline_probe") as connection:
            rows = connection.execute("SELECT id, note FROM kept ORDER BY id").fetchall()
        assert rows == [(1, "by psycopg"), (2, "by asyncpg: ü")]
        engine = create_async_engine(asyncpg_url(second, "sagaline_probe"))
        try:
            async with engine.connect() as connection:
                count = (await connection.execute(text("SELECT count(*) FROM kept"))).scalar()
        finally:
            await engine.dispose()
        assert count == 2
    finally:
        first.stop()
        second.stop()
    assert not second.alive()


def test_a_port_in_use_fails_naming_the_port_and_the_log(tmp_path: Path) -> None:
    log_path = tmp_path / "postgres.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = EmbeddedPostgres(port=port, log_path=log_path)
        try:
            with pytest.raises(PostgresError) as caught:
                server.start()
        finally:
            server.stop()
    message = str(caught.value)
    assert f"Port {port} on 127.0.0.1 is already in use" in message
    assert str(log_path) in message
    assert "Address already in use" in message  # the log's tail is part of the message
    assert not server.alive()
    assert not server.data_dir.exists(), "stop() left the temporary data dir it created"
