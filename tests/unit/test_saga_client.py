"""`sagaline.sdk.client`: SagaClient and AsyncSagaClient against the orchestrator's real app
served by uvicorn on a local port (its real handler and an SQLite database; the test plays the
steps' services): a start, the same start again, a wait that ends with the saga, a wait that
runs out, and a refusal surfaced with the orchestrator's words."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from sagaline.sdk.client import AsyncSagaClient, SagaClient, SagaClientError
from tests.unit.orchestrator_harness import Harness, definition, harness, payloads

TOKEN = "client-token"


@dataclass
class Served:
    trip: Harness
    url: str


async def serve(trip: Harness, token: str | None) -> AsyncIterator[str]:
    """The app on 127.0.0.1 at a free port, in this event loop (its lifespan, which would start
    the consumer, off). The socket listens before uvicorn starts: no connection is refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(trip.app(token), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        listener.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    async with harness(url, definition("flight", "hotel")) as trip:
        async for address in serve(trip, TOKEN):
            yield Served(trip, address)


async def test_the_async_client_starts_a_saga_and_waits_for_its_end(served: Served) -> None:
    trip = served.trip
    async with AsyncSagaClient(served.url, TOKEN) as sagas:
        started = await sagas.start({"traveller": "ada"}, idempotency_key="booking-1")
        assert started.status == "RUNNING"
        assert started.url == f"/sagas/{started.id}"
        again = await sagas.start({"traveller": "ada"}, idempotency_key="booking-1")
        assert again.id == started.id
        assert payloads(await trip.commands(started.id, "flight")) == [{"traveller": "ada"}]

        waiting = asyncio.create_task(sagas.wait(started.id, timeout=60))
        await trip.done(started.id, "flight", {"seat": "12A"})
        await trip.done(started.id, "hotel", {"room": 7})
        async with asyncio.timeout(30):
            saga = await waiting
    assert saga.ended
    assert (saga.status, saga.reason) == ("COMPLETED", None)
    assert saga.results == {"flight": {"seat": "12A"}, "hotel": {"room": 7}}
    assert saga.payload == {"traveller": "ada"}


async def test_the_client_starts_and_waits_from_a_thread(served: Served) -> None:
    """The synchronous client (run in a thread: the server is this event loop's)."""
    trip = served.trip

    def start() -> uuid.UUID:
        with SagaClient(served.url, TOKEN) as sagas:
            return sagas.start({"traveller": "bob"}, idempotency_key="booking-2").id

    def wait(saga_id: uuid.UUID) -> tuple[str, str | None, dict[str, object]]:
        with SagaClient(served.url, TOKEN) as sagas:
            saga = sagas.wait(saga_id, timeout=60)
            return saga.status, saga.reason, saga.results

    saga_id = await asyncio.to_thread(start)
    waiting = asyncio.create_task(asyncio.to_thread(wait, saga_id))
    await trip.done(saga_id, "flight", {"seat": "1C"})
    await trip.failed(saga_id, "hotel", "no room")
    await trip.compensated(saga_id, "flight")
    async with asyncio.timeout(30):
        outcome = await waiting
    assert outcome == ("COMPENSATED", "hotel: no room", {"flight": {"seat": "1C"}})


async def test_a_wait_that_runs_out_returns_the_saga_not_ended(served: Served) -> None:
    async with AsyncSagaClient(served.url, TOKEN) as sagas:
        started = await sagas.start({"traveller": "ada"}, idempotency_key="booking-3")
        saga = await sagas.wait(started.id, timeout=0.3)
    assert not saga.ended
    assert saga.status == "RUNNING"


async def test_a_refusal_carries_the_orchestrators_words(served: Served) -> None:
    async with AsyncSagaClient(served.url, "not-the-token") as sagas:
        with pytest.raises(SagaClientError) as refused:
            await sagas.start({"traveller": "ada"}, idempotency_key="booking-4")
    assert refused.value.status_code == 401
    assert refused.value.detail == "the bearer token is not valid"
    async with AsyncSagaClient(served.url, TOKEN) as sagas:
        with pytest.raises(SagaClientError) as unknown:
            await sagas.wait(uuid.uuid4(), timeout=1)
    assert unknown.value.status_code == 404
