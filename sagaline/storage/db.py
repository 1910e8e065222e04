"""Async database access for SQLite (`sagaline.storage.sqlite_driver`) and PostgreSQL (asyncpg).

SQLite allows one writer per file: every transaction begins IMMEDIATE (no lock upgrade that could
fail mid-transaction) and, inside one process, writers queue on an asyncio lock rather than on
SQLite's sleeping busy handler. The relay is another process; the driver waits for it without
blocking the event loop.

On SQLite every write transaction of a process goes through one connection (they take turns
anyway): no pool checkout, reset and return around each.

Rows that a transaction only appends (outbox messages, history) are collected while it runs and
written with one multi-row INSERT per table just before it commits: the hot path's fixed cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import orjson
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Insert,
    Select,
    Table,
    Update,
    any_,
    bindparam,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from sagaline.storage import direct_sql
from sagaline.storage.sqlite_driver import Connection, connector
from sagaline.storage.wake import WakeSender
from sagaline.telemetry.tracing import transaction_span

OUTBOX_TABLE = "outbox"
NOTIFY_CHANNEL = "sagaline_outbox"  # the outbox trigger's (migration common_0002)
_APPENDS = "appends"
_UPDATES = "updates"
_AFTER_COMMIT = "after_commit"
_READ_ONLY = "sagaline_read_only"
_UPDATE_PREFIX = "b_"


def _parse(url: str) -> URL:
    return make_url(url)


def is_sqlite(url: str) -> bool:
    return _parse(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> str:
    """The file of an SQLite database URL (its lock and wake-up socket are named after it)."""
    return _parse(url).database or "sagaline.db"


def async_url(url: str) -> URL:
    parsed = _parse(url)
    driver = "aiosqlite" if parsed.get_backend_name() == "sqlite" else "asyncpg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def sync_url(url: str) -> URL:
    parsed = _parse(url)
    driver = "pysqlite" if parsed.get_backend_name() == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and error messages."""
    return _parse(url).render_as_string(hide_password=True)


def redact_text(text: str) -> str:
    """Hide anything that looks like a URL's password in free text."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def dump_json(value: Any) -> str:
    """JSON columns written by orjson (several times faster than the standard library's, which
    stays the fallback for what orjson refuses, e.g. integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Readers take no write lock (WAL lets them run beside the writer); writers take it first.
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        driver_connection = connection.connection.driver_connection
        await_(driver_connection.begin(immediate=not read_only))


async def next_transaction_writes(connection: AsyncConnection, writes: bool) -> None:
    """On SQLite, whether the connection's next transaction takes the write lock at its BEGIN
    (IMMEDIATE) or only reads beside the writer (deferred); PostgreSQL ignores it."""
    await connection.execution_options(**{_READ_ONLY: not writes})


class Database:
    """An engine, a session factory and the transaction discipline of one service."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs.update(async_creator=connector(sqlite_path(url), pragmas=SQLITE_PRAGMAS))
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
        self.engine = create_async_engine(
            async_url(url), json_serializer=dump_json, json_deserializer=orjson.loads, **kwargs
        )
        if self.sqlite:
            _configure_sqlite(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads need no transaction of their own: on PostgreSQL each statement autocommits (no
        # BEGIN/ROLLBACK round trips), on SQLite they begin deferred (no write lock).
        reading = {_READ_ONLY: True} if self.sqlite else {"isolation_level": "AUTOCOMMIT"}
        self.reads = async_sessionmaker(
            self.engine.execution_options(**reading), expire_on_commit=False
        )
        self._write_lock = asyncio.Lock() if self.sqlite else None
        self._writer: AsyncConnection | None = None  # SQLite: the connection every write uses
        self._direct = self.sqlite  # hot-path statements on the driver (`direct_sql`)
        # PostgreSQL's outbox trigger NOTIFYs the relay; an SQLite relay is woken by a datagram.
        self._relay_wake = WakeSender(sqlite_path(url)) if self.sqlite else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One local transaction, committed on success (outbox inserts wake the relay)."""
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(transaction_span(self.engine.dialect.name))
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            session = await stack.enter_async_context(await self._write_session())
            session.info[direct_sql.ENABLED] = self._direct
            async with session.begin():
                yield session
                written = await flush_appends(session)
            if self._relay_wake is not None and OUTBOX_TABLE in written:
                self._relay_wake.wake()
            for callback in session.info.pop(_AFTER_COMMIT, []):
                callback()

    async def _write_session(self) -> AsyncSession:
        """A session for one write transaction. On SQLite, where writes take turns, each is
        bound to the same connection: no pool checkout, reset and return around every one."""
        if not self.sqlite:
            return self.sessions()
        writer = self._writer
        if writer is not None and writer.in_transaction():  # left open by a cancelled one
            self._writer = None
            await writer.close()  # back to the pool, rolled back
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = await self.engine.connect()
        return AsyncSession(bind=self._writer, expire_on_commit=False)

    def trace_statements(self) -> None:
        """Every statement through the session, where SQLAlchemy's instrumentation gives each
        its span (`direct_sql` would run the hot path's without one)."""
        self._direct = False

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._relay_wake is not None:
            self._relay_wake.close()
        await self.engine.dispose()


def append(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Queue rows for one multi-row INSERT at the end of the session's transaction.

    The INSERT reads each dict when it runs: a change made to a queued dict later in the
    transaction is what gets written."""
    appends: dict[Table, list[dict[str, Any]]] = session.info.setdefault(_APPENDS, {})
    appends.setdefault(table, []).extend(rows)


def update_later(
    session: AsyncSession,
    table: Table,
    row: dict[str, Any],
    *,
    key: tuple[str, ...],
    columns: tuple[str, ...],
) -> None:
    """Queue an UPDATE of one row of `table` (found by its `key` entries, setting its `columns`)
    for the end of the transaction: one executemany per table and column set. Queuing the same
    dict twice writes it once; it is read when the UPDATE runs, before the queued INSERTs (so a
    row inserted by the same transaction is written whole by its INSERT)."""
    updates: dict[tuple[Table, tuple[str, ...], tuple[str, ...]], dict[int, dict[str, Any]]]
    updates = session.info.setdefault(_UPDATES, {})
    updates.setdefault((table, key, columns), {})[id(row)] = row


async def flush_appends(session: AsyncSession) -> set[str]:
    """Write the ORM's changes, the queued updates, then the queued rows; the names of the
    tables appended to."""
    if session.new or session.dirty or session.deleted:  # the hot paths hold no ORM objects
        await session.flush()
    updates = session.info.pop(_UPDATES, {})
    appends: dict[Table, list[dict[str, Any]]] = session.info.pop(_APPENDS, {})
    if not updates and not appends:
        return set()  # a transaction that wrote nothing need not even begin
    driver = await direct_sql.driver_of(session)
    dialect = session.get_bind().dialect
    for (table, key, columns), queued in updates.items():
        statement = _update(table, key, columns)
        if driver is not None:
            compiled = direct_sql.compiled(statement, dialect, _UPDATE_PREFIX)
            await direct_sql.execute_many(driver, compiled, list(queued.values()))
            continue
        names = key + columns
        parameters = [
            {f"{_UPDATE_PREFIX}{name}": row[name] for name in names} for row in queued.values()
        ]
        await session.execute(statement, parameters)
    written = set()
    for table, rows in appends.items():
        if rows:
            await _insert_rows(session, driver, table, rows)
            written.add(table.name)
    return written


async def _insert_rows(
    session: AsyncSession,
    driver: Connection | None,
    table: Table,
    rows: list[dict[str, Any]],
) -> None:
    columns = tuple(rows[0])
    if driver is not None and all(tuple(row) == columns for row in rows):
        compiled = direct_sql.insert_of(table, columns, session.get_bind().dialect)
        if compiled is not None:
            await direct_sql.execute_many(driver, compiled, rows)
            return
    await session.execute(_insert(table), rows)


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction has committed (never if it rolls back)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def queued_mark(session: AsyncSession) -> Callable[[], None]:
    """A savepoint of what the transaction has queued so far (`append`, `update_later`,
    `after_commit`): the returned function drops what was queued after it. It costs no
    statement, unlike a database SAVEPOINT (two round trips): a handler whose writes are all
    queued undoes one message's work with it and lets the rest of the batch commit."""
    appends: dict[Table, list[dict[str, Any]]] = session.info.setdefault(_APPENDS, {})
    updates: dict[Any, dict[int, dict[str, Any]]] = session.info.setdefault(_UPDATES, {})
    callbacks: list[Callable[[], None]] = session.info.setdefault(_AFTER_COMMIT, [])
    appended = {table: len(rows) for table, rows in appends.items()}
    updated = {key: len(rows) for key, rows in updates.items()}
    called = len(callbacks)

    def rollback() -> None:
        for table, rows in appends.items():
            del rows[appended.get(table, 0) :]
        for key, queued in updates.items():
            for row_id in list(queued)[updated.get(key, 0) :]:  # dicts keep insertion order
                del queued[row_id]
        del callbacks[called:]

    return rollback


def batch_cache(session: AsyncSession, name: str) -> dict[Any, Any]:
    """A per-transaction cache of rows loaded (and locked) for the batch being handled.

    Handlers change the cached rows (plain dicts) in memory; `update_later` writes them in a
    few executemany statements when the transaction ends.
    """
    caches: dict[str, dict[Any, Any]] = session.info.setdefault("batch_cache", {})
    return caches.setdefault(name, {})


def among(column: Any, dialect: str) -> ColumnElement[bool]:
    """`column IN :values`; on PostgreSQL `column = ANY(:values)`, one statement text (and one
    prepared statement) whatever the number of values."""
    if dialect == "postgresql":
        return column == any_(bindparam("values", type_=ARRAY(column.type)))
    return column.in_(bindparam("values", expanding=True))


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


@functools.cache
def _update(table: Table, key: tuple[str, ...], columns: tuple[str, ...]) -> Update:
    """`UPDATE table SET columns WHERE key`, bound by `b_<column>` (a bound parameter may not
    take a column's own name in an executemany UPDATE)."""
    return (
        update(table)
        .where(*(table.c[name] == bindparam(f"{_UPDATE_PREFIX}{name}") for name in key))
        .values({name: bindparam(f"{_UPDATE_PREFIX}{name}") for name in columns})
    )


@functools.cache
def _locked_table_rows(table: Table, column: str, dialect: str) -> Select[Any]:
    return (
        select(table)
        .where(among(table.c[column], dialect))
        .order_by(*table.primary_key.columns)
        .with_for_update()
    )


async def select_locked(
    session: AsyncSession, table: Table, column: str, keys: Collection[Any]
) -> list[dict[str, Any]]:
    """Lock and read the rows of `table` whose `column` is in `keys`, as plain dicts (no ORM
    objects to build, track and flush: the hot path's cheapest read), in primary key order."""
    if not keys:
        return []
    driver = await direct_sql.driver_of(session)
    if driver is not None:
        dialect = session.get_bind().dialect
        compiled = direct_sql.rows_where_in(table, column, len(keys), dialect)
        return await direct_sql.fetch(driver, compiled, direct_sql.numbered("k", keys))
    statement = _locked_table_rows(table, column, session.get_bind().dialect.name)
    result = await session.execute(statement, {"values": list(keys)})
    return [dict(row) for row in result.mappings()]


async def select_locked_into(
    session: AsyncSession, table: Table, column: str, keys: set[Any], rows: dict[Any, Any]
) -> None:
    """`select_locked` for the `keys` not in `rows` yet, each added to `rows` under its key (None
    for a key with no row): a batch reads each row once, whichever message asks first."""
    missing = keys - rows.keys()
    found = await select_locked(session, table, column, missing)
    rows.update(dict.fromkeys(missing))
    rows.update((row[column], row) for row in found)
