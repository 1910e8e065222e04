"""The hot path's reads and writes without ORM objects: rows read as dicts (`select_locked`),
new rows INSERTed and changed ones UPDATEd by one executemany each when the transaction ends,
with whatever the transaction did to them by then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select

from sagaline.storage.db import Database, append, select_locked, update_later

METADATA = MetaData()
ITEMS = Table(
    "items",
    METADATA,
    Column("id", String(8), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("note", String(20)),
)
KEY = ("id",)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'writes.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
        await connection.execute(
            ITEMS.insert(),
            [{"id": "b", "quantity": 2, "note": None}, {"id": "a", "quantity": 1, "note": None}],
        )
    yield database
    await database.dispose()


async def items(db: Database) -> dict[str, tuple[int, str | None]]:
    async with db.reads() as session:
        rows = await session.execute(select(ITEMS.c.id, ITEMS.c.quantity, ITEMS.c.note))
        return {row.id: (row.quantity, row.note) for row in rows}


async def test_rows_are_read_as_dicts_in_key_order(db: Database) -> None:
    async with db.transaction() as session:
        rows = await select_locked(session, ITEMS, "id", {"b", "a", "missing"})
        assert rows == [
            {"id": "a", "quantity": 1, "note": None},
            {"id": "b", "quantity": 2, "note": None},
        ]
        assert await select_locked(session, ITEMS, "id", set()) == []


async def test_a_changed_row_is_written_once_with_its_last_values(db: Database) -> None:
    async with db.transaction() as session:
        (row,) = await select_locked(session, ITEMS, "id", {"a"})
        row["quantity"] += 10
        update_later(session, ITEMS, row, key=KEY, columns=("quantity",))
        row["quantity"] += 5
        row["note"] = "not a column set"
        update_later(session, ITEMS, row, key=KEY, columns=("quantity",))
    assert await items(db) == {"a": (16, None), "b": (2, None)}


async def test_a_new_row_changed_later_is_inserted_whole(db: Database) -> None:
    async with db.transaction() as session:
        row = {"id": "c", "quantity": 3, "note": "new"}
        append(session, ITEMS, [row])
        update_later(session, ITEMS, row, key=KEY, columns=("quantity",))  # finds no row yet
        row["quantity"] = 30
    assert await items(db) == {"a": (1, None), "b": (2, None), "c": (30, "new")}


async def test_nothing_is_written_when_the_transaction_fails(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            (row,) = await select_locked(session, ITEMS, "id", {"b"})
            row["quantity"] = 0
            update_later(session, ITEMS, row, key=KEY, columns=("quantity",))
            append(session, ITEMS, [{"id": "d", "quantity": 4, "note": None}])
            raise RuntimeError("rolled back")
    assert await items(db) == {"a": (1, None), "b": (2, None)}
