"""The hot path's statements on SQLite, compiled by SQLAlchemy once and run on the driver itself.

Every consumer transaction runs the same few statements: claim the batch's message ids in the
inbox, lock-read the rows the batch touches, then one UPDATE and one INSERT per table at its end.
Through the session each costs about 50 µs of Python (cache key, execution context, parameter and
result objects) around an SQLite call of a few microseconds: most of a transaction's CPU. Here
SQLAlchemy compiles each statement shape once (its SQL, the order of its placeholders) and the
column types' own bind and result processors convert every value, so what is written and read is
exactly what the session would write and read; only the execution machinery is skipped. An SQLite
relay reads its outbox the same way (`sagaline.delivery.relay.loop`).

Only on SQLite, and only where statements are not traced (a statement run here has no span).
Errors come back as SQLAlchemy's exceptions, as they would through the session. PostgreSQL keeps
the session's path (asyncpg's own statement cache already makes its statements cheap).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from sagaline.storage.sqlite_driver import Connection

Processor = Callable[[Any], Any]
ENABLED = "direct_sql"  # session.info: this transaction may run statements on the driver
_DRIVER = "direct_sql_driver"


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement's SQL and how to convert its parameters and result rows."""

    sql: str
    keys: tuple[str, ...]  # what each placeholder reads from a parameter mapping, in order
    binds: tuple[Processor | None, ...]
    columns: tuple[str, ...]  # the result's (a SELECT's or a RETURNING's) column names
    results: tuple[Processor | None, ...]
    fixed: Mapping[str, Any]  # placeholders with a value of their own (SQLite's OFFSET 0)

    @classmethod
    def of(
        cls, statement: ClauseElement, dialect: Dialect, key_of: Callable[[str], str] = str
    ) -> Compiled:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        names = tuple(compiled.positiontup or ())
        exported = tuple(getattr(statement, "exported_columns", ()))
        return cls(
            sql=compiled.string,
            keys=tuple(key_of(name) for name in names),
            binds=tuple(_bind(compiled.binds[name].type, dialect) for name in names),
            columns=tuple(column.key for column in exported),
            results=tuple(_result(column.type, dialect) for column in exported),
            fixed={
                key_of(name): compiled.binds[name].effective_value
                for name in names
                if not compiled.binds[name].required
            },
        )

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        if self.fixed:
            values = {**self.fixed, **values}
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self.binds, map(values.__getitem__, self.keys), strict=True)
        )

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        return {
            name: value if process is None else process(value)
            for name, process, value in zip(self.columns, self.results, values, strict=True)
        }


def _bind(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    return type_.dialect_impl(dialect).result_processor(dialect, None)


async def driver_of(session: AsyncSession) -> Connection | None:
    """The SQLite driver connection of the session's transaction, or None where statements must
    go through the session (PostgreSQL, traced statements, a session not from `transaction`)."""
    if not session.info.get(ENABLED):
        return None
    driver: Connection | None = session.info.get(_DRIVER)
    if driver is None:
        # session.connection() begins the transaction if it has not yet
        driver = await driver_of_connection(await session.connection())
        session.info[_DRIVER] = driver
    return driver


async def driver_of_connection(connection: AsyncConnection) -> Connection:
    """The SQLite driver connection under an SQLAlchemy connection of an SQLite engine."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, Connection), "not an SQLite engine's connection"
    return driver


async def fetch(
    driver: Connection, compiled: Compiled, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run a statement that returns rows; the rows as dicts of converted values."""
    parameters = compiled.parameters(values)
    try:
        rows = await driver.fetch_all(compiled.sql, parameters)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(compiled.sql, parameters, exc, sqlite3.Error) from exc
    return [compiled.row(row) for row in rows]


async def execute_many(
    driver: Connection, compiled: Compiled, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run a statement once per parameter mapping (one executemany)."""
    parameters = [compiled.parameters(row) for row in rows]
    try:
        await driver.execute_many(compiled.sql, parameters)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            compiled.sql, parameters, exc, sqlite3.Error, ismulti=True
        ) from exc


def numbered(prefix: str, values: Iterable[Any]) -> dict[str, Any]:
    """`{prefix0: first value, prefix1: second value, ...}`: the parameters of `rows_where_in`."""
    return {f"{prefix}{index}": value for index, value in enumerate(values)}


def numbered_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Row i's values as `<column>_<i>`: the parameters of `insert_new_returning`."""
    return {
        f"{name}_{index}": value for index, row in enumerate(rows) for name, value in row.items()
    }


@functools.lru_cache(maxsize=1024)
def compiled(statement: ClauseElement, dialect: Dialect, strip_prefix: str = "") -> Compiled:
    """A statement built (and kept) elsewhere; each placeholder reads its name without
    `strip_prefix` from a row."""
    return Compiled.of(statement, dialect, lambda name: name.removeprefix(strip_prefix))


@functools.lru_cache(maxsize=4096)
def rows_where_in(table: Table, column: str, count: int, dialect: Dialect) -> Compiled:
    """`SELECT table's columns WHERE column IN (k0, ..., k<count-1>) ORDER BY primary key`."""
    keys = [bindparam(f"k{index}", type_=table.c[column].type) for index in range(count)]
    statement = select(table).where(table.c[column].in_(keys)).order_by(*table.primary_key.columns)
    return Compiled.of(statement, dialect)


@functools.lru_cache(maxsize=1024)
def insert_of(table: Table, columns: tuple[str, ...], dialect: Dialect) -> Compiled | None:
    """`INSERT INTO table (columns) VALUES (...)`, or None where a column left out has a default
    SQLAlchemy computes in Python (the session's INSERT would fill it in)."""
    if any(c.default is not None for c in table.columns if c.key not in columns):
        return None
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    return Compiled.of(insert(table).values(values), dialect)


@functools.lru_cache(maxsize=1024)
def insert_new_returning(
    table: Table, columns: tuple[str, ...], returning: str, count: int, dialect: Dialect
) -> Compiled:
    """`INSERT INTO table (columns) VALUES (row 0), ..., (row count-1) ON CONFLICT DO NOTHING
    RETURNING returning`; row i's values are bound as `<column>_<i>`."""
    rows = [
        {name: bindparam(f"{name}_{index}", type_=table.c[name].type) for name in columns}
        for index in range(count)
    ]
    statement = (
        sqlite.insert(table).values(rows).on_conflict_do_nothing().returning(table.c[returning])
    )
    return Compiled.of(statement, dialect)
