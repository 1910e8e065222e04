"""Waking an SQLite database's relay the moment a transaction wrote to its outbox.

PostgreSQL has NOTIFY; SQLite has nothing, and polling every few milliseconds costs CPU when idle
and a poll interval per hop when busy. The relay that leads (it holds the database's file lock)
binds a Unix datagram socket named after the database file, in Linux's abstract namespace (no file
to clean up, no path-length limit, gone with the process); a service sends it one byte after each
commit that appended outbox rows. A lost or unsent wake-up costs only latency: the relay still
polls, slowly, as the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


def wake_address(database_path: str) -> bytes:
    """The abstract socket name of the relay of the SQLite database at `database_path`."""
    digest = hashlib.sha256(os.path.realpath(database_path).encode()).hexdigest()[:24]
    return b"\0sagaline-relay-" + digest.encode()


class WakeSender:
    """Sends wake-ups to one database's relay; never blocks and never fails its caller."""

    def __init__(self, database_path: str) -> None:
        self.address = wake_address(database_path)
        self._socket: socket.socket | None = None

    def wake(self) -> None:
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(b"!", self.address)
        except OSError:
            pass  # no relay listening, or its queue is full: it is awake or will poll

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


@contextlib.contextmanager
def listening(database_path: str, on_wake: Callable[[], None]) -> Iterator[bool]:
    """Call `on_wake` whenever a service wakes this database's relay; yields whether the socket
    could be bound (another process holding it means it is not the leader it thinks it is)."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setblocking(False)
    try:
        receiver.bind(wake_address(database_path))
    except OSError as exc:
        log.warning("relay wake-up socket for %s not bound (%s); polling", database_path, exc)
        receiver.close()
        yield False
        return
    loop = asyncio.get_running_loop()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while receiver.recv(64):
                pass
        on_wake()

    loop.add_reader(receiver.fileno(), drain)
    try:
        yield True
    finally:
        loop.remove_reader(receiver.fileno())
        receiver.close()
