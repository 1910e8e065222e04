"""The hot path's statements on the SQLite driver (`direct_sql`) write and read exactly what the
session's statements write and read, fail with SQLAlchemy's exceptions, and stay off where
statements are traced."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Enum,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    bindparam,
    select,
)
from sqlalchemy.exc import IntegrityError

from sagaline.delivery import inbox
from sagaline.storage import direct_sql
from sagaline.storage.db import Database, append, select_locked, update_later
from sagaline.storage.tables import InboxMessage


class Colour(enum.Enum):
    RED = "RED"
    GREEN = "GREEN"


METADATA = MetaData()
THINGS = Table(
    "things",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("colour", Enum(Colour), nullable=False),
    Column("price", Numeric(12, 2), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("doc", JSON, nullable=False),
    Column("blob", LargeBinary, nullable=True),
    Column("name", String(20), nullable=True),
    Column("count", Integer, nullable=False),
)


def thing(**changes: Any) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4(),
        "colour": Colour.RED,
        "price": Decimal("12.50"),
        "at": datetime(2026, 12, 7, 14, 5, 9, 123456, tzinfo=UTC),
        "doc": {"items": [{"sku": "a", "n": 2}], "note": "ü"},
        "blob": b"\x00\xffbytes",
        "name": None,
        "count": 1,
    }
    return row | changes


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'direct.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
        await connection.run_sync(InboxMessage.metadata.create_all, tables=[inbox.INBOX])
    yield database
    await database.dispose()


async def read_all(db: Database) -> list[dict[str, Any]]:
    """Through the session: SQLAlchemy's own reading of what was written."""
    async with db.reads() as session:
        result = await session.execute(select(THINGS).order_by(THINGS.c.count))
        return [dict(row) for row in result.mappings()]


async def write(db: Database, rows: list[dict[str, Any]], *, direct: bool) -> None:
    db._direct = direct
    async with db.transaction() as session:
        assert (await direct_sql.driver_of(session) is not None) == direct
        append(session, THINGS, rows)
    db._direct = True


def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: value for name, value in row.items() if name != "id"} for row in rows]


async def test_a_transaction_runs_its_hot_statements_on_the_driver(db: Database) -> None:
    async with db.transaction() as session:
        assert await direct_sql.driver_of(session) is not None
    async with db.reads() as session:  # not a write transaction: through the session
        assert await direct_sql.driver_of(session) is None
    db.trace_statements()
    async with db.transaction() as session:
        assert await direct_sql.driver_of(session) is None


async def test_rows_written_directly_are_stored_as_the_session_stores_them(db: Database) -> None:
    values: list[dict[str, Any]] = [
        {"count": 1},
        {"count": 2, "colour": Colour.GREEN, "name": "two", "blob": None},
    ]
    await write(db, [thing(**changes) for changes in values], direct=True)
    await write(
        db,
        [thing(**changes | {"count": changes["count"] + 10}) for changes in values],
        direct=False,
    )
    direct, through_session = (await read_all(db))[:2], (await read_all(db))[2:]
    for row in through_session:
        row["count"] -= 10
    assert without_ids(direct) == without_ids(through_session)
    assert direct[0]["at"].replace(tzinfo=UTC) == thing()["at"]  # SQLite keeps no time zone


async def test_rows_read_directly_are_what_the_session_reads(db: Database) -> None:
    rows = [thing(count=1), thing(count=2, doc=[1, "x", None], price=Decimal("0.01"))]
    await write(db, rows, direct=False)
    async with db.transaction() as session:
        read = await select_locked(session, THINGS, "id", {row["id"] for row in rows})
    read.sort(key=lambda row: row["count"])
    assert read == await read_all(db)
    assert [row["doc"] for row in read] == [rows[0]["doc"], [1, "x", None]]


async def test_an_update_writes_the_queued_columns(db: Database) -> None:
    original = thing()
    await write(db, [original], direct=True)
    async with db.transaction() as session:
        (row,) = await select_locked(session, THINGS, "id", {original["id"]})
        row |= {"colour": Colour.GREEN, "doc": {"changed": True}, "count": 7, "name": "kept out"}
        update_later(session, THINGS, row, key=("id",), columns=("colour", "doc", "count"))
    changed = {"colour": Colour.GREEN, "doc": {"changed": True}, "count": 7}
    naive = {"at": original["at"].replace(tzinfo=None)}  # SQLite keeps no time zone
    assert await read_all(db) == [original | changed | naive]  # "name" was not queued


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(db: Database) -> None:
    row = thing()
    async with db.transaction() as session:
        append(session, THINGS, [row])
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            append(session, THINGS, [thing(id=row["id"])])
    assert [stored["id"] for stored in await read_all(db)] == [row["id"]]


async def test_an_inbox_claim_returns_only_ids_not_seen_before(db: Database) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with db.transaction() as session:
        assert await inbox.claim(session, [(first, "a"), (second, "b")]) == {first, second}
    async with db.transaction() as session:
        claimed = await inbox.claim(session, [(second, "b"), (third, "c"), (third, "c")])
        assert claimed == {third}
    async with db.reads() as session:
        stored = (
            await session.execute(select(inbox.INBOX.c.message_id, inbox.INBOX.c.topic))
        ).all()
    assert sorted(stored, key=lambda row: row[1]) == [(first, "a"), (second, "b"), (third, "c")]


async def test_a_select_read_on_the_driver_of_a_connection_binds_its_own_values(
    db: Database,
) -> None:
    """The relay's read: on a plain connection, outside any transaction. A LIMIT given as a
    parameter makes SQLite's compiler add an OFFSET of its own value, which no caller passes."""
    await write(db, [thing(count=count) for count in range(1, 6)], direct=False)
    statement = (
        select(THINGS.c.count, THINGS.c.doc)
        .where(THINGS.c.count > bindparam("after"))
        .order_by(THINGS.c.count)
        .limit(bindparam("limit"))
    )
    async with db.engine.connect() as connection:
        driver = await direct_sql.driver_of_connection(connection)
        compiled = direct_sql.compiled(statement, connection.dialect)
        rows = await direct_sql.fetch(driver, compiled, {"after": 1, "limit": 2})
        assert not connection.in_transaction()
    assert rows == [{"count": 2, "doc": thing()["doc"]}, {"count": 3, "doc": thing()["doc"]}]
