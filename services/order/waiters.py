"""Waiting for an order's decision: long-polling instead of clients polling in a loop."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict


class DecisionWaiters:
    """In-process wake-ups for orders decided by this replica's consumer.

    Another replica may decide the order (several replicas share the consumer group), so a
    waiter also re-reads the database at least every `recheck_s`.
    """

    recheck_s = 1.0

    def __init__(self) -> None:
        self._events: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    def decided(self, order_id: uuid.UUID) -> None:
        for event in self._events.pop(order_id, ()):
            event.set()

    async def wait(self, order_id: uuid.UUID, timeout_s: float) -> None:
        event = asyncio.Event()
        self._events[order_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout=min(timeout_s, self.recheck_s))
        except TimeoutError:
            pass
        finally:
            waiting = self._events.get(order_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[order_id]
