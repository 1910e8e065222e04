"""Waiting for a saga to end: `GET /sagas/{id}` with `Prefer: wait=N` instead of a polling loop.

The orchestrator's consumer wakes the requests waiting on this replica when it commits a saga's
end. Another replica may end it (replicas share the consumer group, and the timer's work), so a
waiter also reads the saga again at least every `recheck_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterator


class EndWaiters:
    recheck_s = 1.0

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, set[asyncio.Future[None]]] = defaultdict(set)

    def ended(self, saga_id: uuid.UUID) -> None:
        """The saga's end was committed here: wake whoever waits for it."""
        for waiter in self._waiting.pop(saga_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def watching(self, saga_id: uuid.UUID) -> int:
        """How many requests wait for the saga."""
        return len(self._waiting.get(saga_id, ()))

    @contextlib.contextmanager
    def watch(self, saga_id: uuid.UUID) -> Iterator[asyncio.Future[None]]:
        """A future done when the saga ends here. Watch before reading the saga: an end
        committed between the read and the wait then still wakes the waiter."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[saga_id].add(waiter)
        try:
            yield waiter
        finally:
            waiting = self._waiting.get(saga_id)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiting[saga_id]

    async def until(self, waiter: asyncio.Future[None], timeout_s: float) -> None:
        """Wait for `waiter`, at most `timeout_s` or `recheck_s`, whichever is shorter."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout=min(timeout_s, self.recheck_s))
