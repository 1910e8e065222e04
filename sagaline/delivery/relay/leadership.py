"""Which of a database's relays publishes: the one holding its leader lock.

Several relays on one database (replicas, a rolling update) must never reorder one key, so only
the leader publishes and the others wait in line for its lock. On PostgreSQL the lock is an
advisory lock held by the relay's LISTEN connection, which also wakes the relay on each commit's
NOTIFY; on SQLite it is a file lock beside the database, and the wake-up is a datagram from the
service (`sagaline.storage.wake`). When a leader dies its lock goes with its connection (or its
file descriptor), and a standby takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from sagaline.storage.db import NOTIFY_CHANNEL, Database, sqlite_path
from sagaline.storage.wake import listening

log = logging.getLogger(__name__)
LEADER_LOCK_ID = 0x5A6A_11E0


class Leadership:
    """One relay's hold on its database's leader lock; `held()` holds it for a block."""

    def __init__(
        self, db: Database, service: str, *, stopping: asyncio.Event, wake: asyncio.Event
    ) -> None:
        self.db = db
        self.service = service
        self._stopping = stopping
        self._wake = wake
        self.is_leader = False
        self.woken = False  # an SQLite relay bound its wake-up socket (else it polls fast)

    def held(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the leader lock (and the wake-ups) for as long as the block runs."""
        raise NotImplementedError


class AdvisoryLock(Leadership):
    """PostgreSQL: an advisory lock held by the connection that LISTENs for commits."""

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        dsn = make_url(self.db.url).set(drivername="postgresql")
        connection = await asyncpg.connect(
            dsn.render_as_string(hide_password=False),
            # Which process leads can be read from pg_stat_activity joined with pg_locks.
            server_settings={"application_name": f"sagaline-relay {self.service} {os.getpid()}"},
        )
        try:
            # Wait in the server's lock queue: a standby takes over the moment the leader's
            # connection ends (a dead process's connection ends with it).
            lock = connection.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK_ID)
            if await self._unless_stopping(lock):
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                connection.add_termination_listener(lambda *_: self._lost())
                self.is_leader = True
                log.info("relay %s: leading (pid %s)", self.service, os.getpid())
            yield
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)

    async def _unless_stopping(self, operation: Awaitable[Any]) -> bool:
        """Await `operation` unless asked to stop first (it is then cancelled); True if it ran."""
        task = asyncio.ensure_future(operation)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return False

    def _lost(self) -> None:
        log.warning("relay %s: lock connection lost; stepping down", self.service)
        self.is_leader = False
        self._wake.set()


class FileLock(Leadership):
    """SQLite: a file lock beside the database; woken by the service's datagrams."""

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._file_lock():
            with listening(sqlite_path(self.db.url), self._wake.set) as self.woken:
                yield

    @contextlib.asynccontextmanager
    async def _file_lock(self) -> AsyncIterator[None]:
        path = Path(f"{sqlite_path(self.db.url)}.relay.lock")
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            while not self._stopping.is_set():
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
            self.is_leader = True
            yield
        finally:
            self.is_leader = False
            os.close(descriptor)


def leadership_for(
    db: Database, service: str, *, stopping: asyncio.Event, wake: asyncio.Event
) -> Leadership:
    kind = FileLock if db.sqlite else AdvisoryLock
    return kind(db, service, stopping=stopping, wake=wake)
