"""A client whose `stop` lets out the CancelledError of its own task does not end its caller."""

from __future__ import annotations

import asyncio

import pytest

from sagaline.kafka.clients import stop


class LetsOutItsCancellation:
    """A consumer whose `stop` cancels one of its own tasks and awaits it unguarded, as
    aiokafka's fetcher and coordinator do on close."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.hold = hold
        self.stopped = False

    async def stop(self) -> None:
        if self.hold is not None:
            await self.hold.wait()
        inner = asyncio.create_task(asyncio.Event().wait())
        await asyncio.sleep(0)
        inner.cancel()
        self.stopped = True
        await inner


async def test_a_cancellation_let_out_by_stop_is_a_client_not_stopped_cleanly() -> None:
    consumer = LetsOutItsCancellation()
    await stop(consumer, "test")  # raises nothing: the caller goes on to a new client
    assert consumer.stopped


async def test_a_caller_being_cancelled_still_ends_while_it_stops_its_client() -> None:
    hold = asyncio.Event()
    closing = asyncio.create_task(stop(LetsOutItsCancellation(hold), "test"))
    await asyncio.sleep(0.05)
    closing.cancel()  # the service shutting down
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, timeout=5)
