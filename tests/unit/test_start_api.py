"""`POST /sagas` and `GET /sagas/{id}` with `Prefer: wait=N` on the orchestrator's real app,
its real handler and an SQLite database: the token is always needed (403 while none is set),
the caller's Idempotency-Key names the saga, bad input is a 422 naming the field, the saga's
outcome goes to no topic, and a waiting request answers when the handler ends the saga."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagaline.services.orchestrator.api import MAX_KEY_LENGTH
from sagaline.services.orchestrator.handler import Orchestrator
from tests.unit.orchestrator_harness import TOKEN, Harness, definition, harness, payloads

AUTH = {"Authorization": f"Bearer {TOKEN}"}
STEPS = ("flight", "hotel")


@pytest.fixture
async def trip(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(f"sqlite:///{tmp_path / 'orchestrator.db'}", definition(*STEPS)) as h:
        yield h


@pytest.fixture
async def client(trip: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with trip.client() as client:
        yield client


async def start(
    client: httpx.AsyncClient, payload: Any, key: str | None = "trip-1", **headers: str
) -> httpx.Response:
    sent = {**AUTH, **headers} | ({"Idempotency-Key": key} if key is not None else {})
    return await client.post("/sagas", json=payload, headers=sent)


def locations(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


# -- the token ------------------------------------------------------------------------------------


async def test_without_a_configured_token_starting_is_refused(trip: Harness) -> None:
    """Secure by default: other mutating requests are open on a service without a token, this
    one is not; the answer says what to set."""
    async with trip.client(None) as client:
        response = await start(client, {"traveller": "ada"})
    assert response.status_code == 403, response.text
    assert "SAGALINE_API_TOKEN" in response.json()["detail"]
    assert await trip.sent() == []


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic c2VjcmV0"])
async def test_starting_needs_the_token(
    client: httpx.AsyncClient, trip: Harness, authorization: str | None
) -> None:
    headers = {"Idempotency-Key": "trip-1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.post("/sagas", json={"traveller": "ada"}, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await trip.sent() == []


# -- bad input ------------------------------------------------------------------------------------


async def test_the_idempotency_key_is_required(client: httpx.AsyncClient) -> None:
    response = await start(client, {"traveller": "ada"}, key=None)
    assert response.status_code == 422, response.text
    assert locations(response) == [["header", "Idempotency-Key"]]


async def test_a_key_over_200_characters_is_refused(client: httpx.AsyncClient) -> None:
    assert MAX_KEY_LENGTH == 200
    assert (await start(client, {}, key="k" * 200)).status_code == 202
    response = await start(client, {}, key="k" * 201)
    assert response.status_code == 422, response.text
    assert locations(response) == [["header", "Idempotency-Key"]]


@pytest.mark.parametrize("body", [[1, 2], "ada", 7, None])
async def test_the_payload_must_be_a_json_object(
    client: httpx.AsyncClient, trip: Harness, body: Any
) -> None:
    response = await start(client, body)
    assert response.status_code == 422, response.text
    assert locations(response) == [["body"]]
    assert await trip.sent() == []


async def test_a_body_that_is_not_json_is_refused(client: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "k", "Content-Type": "application/json"}
    response = await client.post("/sagas", content=b"{not json", headers=headers)
    assert response.status_code == 422, response.text
    assert locations(response)[0][0] == "body"


# -- the start --------------------------------------------------------------------------------


async def test_a_start_answers_202_with_the_sagas_url(
    client: httpx.AsyncClient, trip: Harness
) -> None:
    response = await start(client, {"traveller": "ada"})
    assert response.status_code == 202, response.text
    body = response.json()
    saga_id = uuid.UUID(body["id"])
    assert body == {"id": str(saga_id), "status": "RUNNING", "url": f"/sagas/{saga_id}"}
    assert response.headers["Location"] == f"/sagas/{saga_id}"
    # In the same transaction: the row and the first step's command, with the payload.
    assert payloads(await trip.commands(saga_id, "flight")) == [{"traveller": "ada"}]
    saga = (await client.get(body["url"])).json()
    assert (saga["status"], saga["origin"], saga["payload"]) == (
        "RUNNING",
        "api",
        {"traveller": "ada"},
    )


async def test_the_same_key_returns_the_same_saga(client: httpx.AsyncClient, trip: Harness) -> None:
    first = await start(client, {"traveller": "ada"}, key="trip-7")
    again = await start(client, {"traveller": "ada"}, key="trip-7")
    other = await start(client, {"traveller": "ada"}, key="trip-8")
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    saga_id = uuid.UUID(first.json()["id"])
    assert len(await trip.commands(saga_id, "flight")) == 1  # started once
    listed = (await client.get("/sagas")).json()
    assert sorted(saga["id"] for saga in listed) == sorted([str(saga_id), other.json()["id"]])


async def test_the_same_key_with_another_payload_is_refused(client: httpx.AsyncClient) -> None:
    assert (await start(client, {"traveller": "ada"})).status_code == 202
    response = await start(client, {"traveller": "bob"})
    assert response.status_code == 422, response.text
    assert locations(response) == [["header", "Idempotency-Key"]]
    assert "another payload" in response.json()["detail"][0]["msg"]


async def test_the_outcome_of_a_started_saga_goes_to_no_topic(
    client: httpx.AsyncClient, trip: Harness
) -> None:
    """No initiator waits for it: the order-service reads orchestrator.response and must not
    see it. A saga.start's saga still answers there."""
    saga_id = uuid.UUID((await start(client, {"traveller": "ada"})).json()["id"])
    await trip.done(saga_id, "flight", {"seat": "12A"})
    await trip.failed(saga_id, "hotel", "no room")
    await trip.compensated(saga_id, "flight")
    started = await trip.start({"traveller": "bob"})
    await trip.failed(started, "flight", "no seat")

    saga = (await client.get(f"/sagas/{saga_id}")).json()
    assert saga["status"] == "COMPENSATED"
    assert saga["results"] == {"flight": {"seat": "12A"}}
    assert [t for t, _ in await trip.sent(saga_id)] == [
        trip.orchestrator.steps["flight"].command,
        trip.orchestrator.steps["hotel"].command,
        trip.orchestrator.steps["flight"].compensation,
    ]
    outcome = saga["history"][-1]
    assert (outcome["direction"], outcome["type"]) == ("ended", "saga.compensated")
    assert [t for t, _ in await trip.sent(started)][-1] == trip.orchestrator.saga_topics.response


# -- waiting for the end ------------------------------------------------------------------------


def watched(trip: Harness, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set once a request has read the saga still running and waits for its end."""
    waiters = trip.orchestrator.ended
    waiting = asyncio.Event()
    until = waiters.until

    async def watched_until(ended: asyncio.Future[None], timeout_s: float) -> None:
        waiting.set()
        await until(ended, timeout_s)

    monkeypatch.setattr(waiters, "until", watched_until)
    return waiting


async def test_a_waiting_request_answers_when_the_saga_ends(
    client: httpx.AsyncClient, trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken by the handler's commit, not by reading again: the re-read is an hour away."""
    monkeypatch.setattr(trip.orchestrator.ended, "recheck_s", 3600)
    saga_id = uuid.UUID((await start(client, {"traveller": "ada"})).json()["id"])
    watching = watched(trip, monkeypatch)
    waiting = asyncio.create_task(client.get(f"/sagas/{saga_id}", headers={"Prefer": "wait=30"}))
    await asyncio.wait_for(watching.wait(), timeout=10)
    await trip.done(saga_id, "flight", {"seat": "12A"})
    assert not waiting.done()  # one step is not the end
    await trip.done(saga_id, "hotel", {"room": 7})

    async with asyncio.timeout(10):  # far less than the 30 s asked for
        response = await waiting
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "wait=30"
    saga = response.json()
    assert (saga["status"], saga["reason"]) == ("COMPLETED", None)
    assert saga["results"] == {"flight": {"seat": "12A"}, "hotel": {"room": 7}}
    assert trip.orchestrator.ended.watching(saga_id) == 0


async def test_a_waiting_request_reads_again_when_another_replica_ends_the_saga(
    client: httpx.AsyncClient, trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trip.orchestrator.ended, "recheck_s", 0.05)
    saga_id = uuid.UUID((await start(client, {"traveller": "ada"})).json()["id"])
    watching = watched(trip, monkeypatch)
    waiting = asyncio.create_task(client.get(f"/sagas/{saga_id}", headers={"Prefer": "wait=30"}))
    await asyncio.wait_for(watching.wait(), timeout=10)
    replica = Harness(trip.db, Orchestrator(trip.orchestrator.definition))  # its own waiters
    await replica.done(saga_id, "flight", {"seat": "12A"})
    await replica.failed(saga_id, "hotel", "no room")
    await replica.compensated(saga_id, "flight")

    async with asyncio.timeout(10):
        response = await waiting
    saga = response.json()
    assert (saga["status"], saga["reason"]) == ("COMPENSATED", "hotel: no room")


async def test_a_wait_that_runs_out_answers_with_the_saga_as_it_is(
    client: httpx.AsyncClient,
) -> None:
    saga_id = (await start(client, {"traveller": "ada"})).json()["id"]
    response = await client.get(f"/sagas/{saga_id}", headers={"Prefer": "wait=0.2"})
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "wait=0.2"
    assert response.json()["status"] == "RUNNING"


async def test_without_prefer_the_answer_does_not_wait(client: httpx.AsyncClient) -> None:
    saga_id = (await start(client, {"traveller": "ada"})).json()["id"]
    response = await client.get(f"/sagas/{saga_id}")
    assert response.json()["status"] == "RUNNING"
    assert "Preference-Applied" not in response.headers


async def test_waiting_for_an_unknown_saga_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/sagas/{uuid.uuid4()}", headers={"Prefer": "wait=5"})
    assert response.status_code == 404
