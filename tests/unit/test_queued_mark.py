"""`queued_mark`: one saga's queued writes undone in memory, the rest of the batch kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.storage.db import after_commit, append, queued_mark, update_later

TABLE = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("v", Integer))
OTHER = Table("u", MetaData(), Column("id", Integer, primary_key=True))


def queued(session: AsyncSession) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    appends = {table.name: list(rows) for table, rows in session.info["appends"].items()}
    updates = {key[0].name: list(rows.values()) for key, rows in session.info["updates"].items()}
    return appends, updates, list(session.info["after_commit"])


def test_rollback_drops_only_what_was_queued_after_the_mark() -> None:
    session = AsyncSession()
    kept_row, kept_update = {"id": 1, "v": 1}, {"id": 2, "v": 2}
    append(session, TABLE, [kept_row])
    update_later(session, TABLE, kept_update, key=("id",), columns=("v",))
    after_commit(session, print)
    before = queued(session)

    rollback = queued_mark(session)
    append(session, TABLE, [{"id": 3, "v": 3}])
    append(session, OTHER, [{"id": 4}])  # a table first queued after the mark
    update_later(session, TABLE, kept_update, key=("id",), columns=("v",))  # queued before
    update_later(session, TABLE, {"id": 5, "v": 5}, key=("id",), columns=("v",))
    update_later(session, OTHER, {"id": 6}, key=("id",), columns=())
    after_commit(session, lambda: None)
    assert queued(session) != before
    rollback()

    appends, updates, callbacks = queued(session)
    assert appends == {"t": [kept_row], "u": []}
    assert {name: rows for name, rows in updates.items() if rows} == {"t": [kept_update]}
    assert callbacks == [print]
    assert (appends["t"], updates["t"], callbacks) == (before[0]["t"], before[1]["t"], before[2])
