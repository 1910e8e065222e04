"""The in-loop SQLite driver: statements run on the loop's thread, and a wait for another
process's write lock is an asyncio sleep, never a blocked loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from sagaline.storage.db import Database
from sagaline.storage.sqlite_driver import connector


@pytest.fixture
def database_file(tmp_path: Path) -> Path:
    path = tmp_path / "driver.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x INTEGER)")
    return path


@pytest.fixture
def lock_holder(database_file: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock (as the relay does while it marks rows)."""
    holder = sqlite3.connect(database_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    holder.close()


async def rows(db: Database) -> int:
    async with db.reads() as session:
        return int((await session.execute(text("SELECT count(*) FROM t"))).scalar_one())


async def test_a_transaction_round_trips(database_file: Path) -> None:
    db = Database(f"sqlite:///{database_file}")
    try:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1), (2)"))
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (3)"))
                raise RuntimeError("rolled back")
        assert await rows(db) == 2
    finally:
        await db.dispose()


async def test_a_writer_waits_for_the_lock_without_blocking_the_loop(
    database_file: Path, lock_holder: sqlite3.Connection
) -> None:
    db = Database(f"sqlite:///{database_file}")
    ticked = asyncio.Event()

    async def ticker() -> None:
        for _ in range(50):
            await asyncio.sleep(0.002)
        ticked.set()

    async def write() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))

    ticking = asyncio.create_task(ticker())
    writing = asyncio.create_task(write())
    try:
        await asyncio.wait_for(ticked.wait(), timeout=10)  # the loop runs while it waits
        assert not writing.done(), "the writer did not wait for the lock"
        lock_holder.execute("COMMIT")
        await asyncio.wait_for(writing, timeout=10)
        assert await rows(db) == 1
    finally:
        ticking.cancel()
        writing.cancel()
        await db.dispose()


async def test_a_lock_never_released_ends_in_the_error_after_the_timeout(
    database_file: Path, lock_holder: sqlite3.Connection
) -> None:
    connect = connector(str(database_file), busy_timeout_s=0.2)
    connection = await connect()
    started = time.monotonic()
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await connection.execute("BEGIN IMMEDIATE")
    finally:
        await connection.close()
    assert 0.2 <= time.monotonic() - started < 5
