"""SQLite for SQLAlchemy's asyncio engine, run on the event loop's own thread.

aiosqlite runs every call (open a cursor, execute, fetch, close) in a worker thread and wakes the
loop with its result: ten to forty thread round trips per transaction, which measured at 4.3 ms of
CPU for a consumer's transaction whose SQLite work takes 0.3 ms. Here the same aiosqlite-shaped
connection (what SQLAlchemy's aiosqlite adapter drives) calls `sqlite3` directly: in WAL mode a
statement takes microseconds and never waits for a reader.

It can wait for a writer of another process (the relay marking rows published). SQLite's own busy
handler would sleep on the loop's thread, so the connection's busy timeout is 0 and a statement
refused with SQLITE_BUSY is retried after an asyncio sleep, until `busy_timeout_s`. Retrying is
safe: a refused statement changed nothing (a refused BEGIN IMMEDIATE or COMMIT leaves the
transaction as it was), and writers here always begin IMMEDIATE, so no statement inside a write
transaction meets another writer. The loop's thread does the I/O itself: reads come from the page
cache, a commit appends to the WAL without fsync (synchronous=NORMAL); only a checkpoint, every
thousand pages, waits for the disk.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0
_FIRST_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.05


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(exc)


async def _patiently(call: Callable[[], T], busy_timeout_s: float) -> T:
    """`call()`, retried after an asyncio sleep while SQLite answers BUSY."""
    try:
        return call()
    except sqlite3.OperationalError as exc:
        if not _is_busy(exc):
            raise
    deadline = time.monotonic() + busy_timeout_s
    backoff = _FIRST_BACKOFF_S
    while True:
        await asyncio.sleep(backoff)
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        backoff = min(backoff * 2, _MAX_BACKOFF_S)


class Cursor:
    """The subset of `aiosqlite.Cursor` that SQLAlchemy's adapter uses."""

    def __init__(self, cursor: sqlite3.Cursor, busy_timeout_s: float) -> None:
        self._cursor = cursor
        self._busy_timeout_s = busy_timeout_s

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        await _patiently(lambda: self._cursor.execute(sql, parameters), self._busy_timeout_s)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        rows = list(parameters)
        if not self._cursor.connection.in_transaction:
            # Outside a transaction each row commits alone: after a refusal halfway, a retry
            # would write the first rows twice.
            self._cursor.executemany(sql, rows)
            return self
        await _patiently(lambda: self._cursor.executemany(sql, rows), self._busy_timeout_s)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class Connection:
    """The subset of `aiosqlite.Connection` that SQLAlchemy's adapter uses; autocommit mode
    (isolation_level None): the caller emits BEGIN itself."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout_s: float) -> None:
        self._conn: sqlite3.Connection | None = connection
        self._busy_timeout_s = busy_timeout_s

    @property
    def _connection(self) -> sqlite3.Connection | None:  # the adapter's "still open?" check
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self._open().cursor(), self._busy_timeout_s)

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def fetch_all(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        """Run one statement and return all its rows (no cursor object kept around)."""
        connection = self._open()
        return await _patiently(
            lambda: connection.execute(sql, parameters).fetchall(), self._busy_timeout_s
        )

    async def execute_many(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        await self.cursor().executemany(sql, parameters)

    async def begin(self, *, immediate: bool) -> None:
        """BEGIN IMMEDIATE takes the write lock first (waiting for another process's writer);
        a deferred BEGIN only reads."""
        statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        await _patiently(functools.partial(self._open().execute, statement), self._busy_timeout_s)

    async def commit(self) -> None:
        connection = self._open()
        await _patiently(connection.commit, self._busy_timeout_s)

    async def rollback(self) -> None:
        self._open().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def connector(
    path: str, *, pragmas: Sequence[str] = (), busy_timeout_s: float = BUSY_TIMEOUT_S
) -> Callable[[], Awaitable[Connection]]:
    """An `async_creator` for `create_async_engine`: opens `path` with `pragmas` applied."""

    async def connect() -> Connection:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout=0")  # waits happen off the busy handler
            for pragma in pragmas:
                await _patiently(functools.partial(connection.execute, pragma), busy_timeout_s)
        except BaseException:
            connection.close()
            raise
        return Connection(connection, busy_timeout_s)

    return connect
