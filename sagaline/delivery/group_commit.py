"""Group commit: concurrent requests share one transaction, and each still waits for its commit.

Every unit of work is the same local transaction it would be alone (its data and its outbox rows
commit together, and its caller hears back only after the commit), but many units share one
BEGIN ... COMMIT: the fixed cost of a transaction is paid once per group instead of once per
request. If the group fails, each unit is retried alone, so one bad unit fails only its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.context import Context
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.storage.db import Database
from sagaline.telemetry.tracing import captured, resumed

Unit = Callable[[AsyncSession], Awaitable[Any]]
Pending = tuple[Unit, asyncio.Future[Any], Context | None]


class GroupCommitter:
    def __init__(self, db: Database, max_group: int = 256) -> None:
        self.db = db
        self.max_group = max_group
        self._pending: list[Pending] = []
        self._worker: asyncio.Task[None] | None = None

    async def run(self, unit: Unit) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Each unit runs in its caller's trace context (its outbox rows continue its trace).
        self._pending.append((unit, future, captured()))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = (
                self._pending[: self.max_group],
                self._pending[self.max_group :],
            )
            try:
                async with self.db.transaction() as session:
                    results = [await _run(unit, session, ctx) for unit, _, ctx in group]
            except Exception as exc:
                if len(group) == 1:
                    _settle(group[0][1], exception=exc)
                else:
                    await self._one_by_one(group)
                continue
            for (_, future, _), result in zip(group, results, strict=True):
                _settle(future, result=result)

    async def _one_by_one(self, group: list[Pending]) -> None:
        for unit, future, ctx in group:
            try:
                async with self.db.transaction() as session:
                    result = await _run(unit, session, ctx)
            except Exception as exc:
                _settle(future, exception=exc)
            else:
                _settle(future, result=result)


async def _run(unit: Unit, session: AsyncSession, ctx: Context | None) -> Any:
    with resumed(ctx):
        return await unit(session)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exception: BaseException | None = None
) -> None:
    if future.done():  # the caller went away (a cancelled request)
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
