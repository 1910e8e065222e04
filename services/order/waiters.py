"""Waiting for an order's decision: long-polling instead of clients polling in a loop."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, defaultdict

from sagaline.services.order.models import OrderStatus
from sagaline.services.order.rows import OrderRow


class DecisionWaiters:
    """In-process wake-ups for orders decided by this replica's consumer, carrying the order as
    committed (the waiter answers without reading it again).

    Another replica may decide the order (several replicas share the consumer group), so a
    waiter also re-reads the database at least every `recheck_s`.
    """

    recheck_s = 1.0
    remembered = 10_000

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, set[asyncio.Future[OrderRow]]] = defaultdict(set)
        self._recent: OrderedDict[uuid.UUID, OrderRow] = OrderedDict()

    def known(self, order_id: uuid.UUID) -> OrderRow | None:
        """The order as this replica last committed it (placed, or decided), if it is recent:
        a decided order is final, and a pending one placed here is worth waiting for before
        reading it (the long poll then costs no read at all)."""
        return self._recent.get(order_id)

    async def decision(
        self, order_id: uuid.UUID, timeout_s: float, *, placed_here: bool = False
    ) -> OrderRow | None:
        """The order's decision from memory, with no read: at once if this replica decided it,
        after waiting up to `timeout_s` (or `recheck_s`) if it was placed here and is pending
        (`placed_here` says so even if it was forgotten); None otherwise."""
        known = self.known(order_id)
        if known is not None and known["status"] is not OrderStatus.PENDING:
            return known  # decided by this replica: final
        if known is None and not placed_here:
            return None
        return await self.wait(order_id, timeout_s)

    def placed(self, order: OrderRow) -> None:
        self._remember(order)

    def _remember(self, order: OrderRow) -> None:
        self._recent[order["id"]] = order
        self._recent.move_to_end(order["id"])
        while len(self._recent) > self.remembered:
            self._recent.popitem(last=False)

    def decided(self, order: OrderRow) -> None:
        self._remember(order)
        for waiter in self._waiting.pop(order["id"], ()):
            if not waiter.done():
                waiter.set_result(order)

    async def wait(self, order_id: uuid.UUID, timeout_s: float) -> OrderRow | None:
        """The order once decided here, or None when `timeout_s` (or `recheck_s`) ran out."""
        waiter: asyncio.Future[OrderRow] = asyncio.get_running_loop().create_future()
        self._waiting[order_id].add(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout=min(timeout_s, self.recheck_s))
        except TimeoutError:
            return None
        finally:
            waiting = self._waiting.get(order_id)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiting[order_id]
