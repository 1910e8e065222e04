"""The travel example (examples/travel) beside the order saga in one stack, as a user runs them
(`sagaline up --saga-file k8s/sagas/order.yaml --saga-file examples/travel/saga.yaml`), with its
steps calling the stand-in partner over HTTP:

- hundreds of sagas of each Saga, a share refused by each partner, and `sagaline verify` true
  for both; every COMPLETED trip has its three bookings standing at the partners and every
  compensated one none;
- the flight service SIGKILLed between its call to the airline and the record of its result:
  restarted, it repeats the call with the same idempotency key, and the airline books once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.lab.ports import free_port
from sagaline.lab.stack import Stack
from sagaline.sdk import AsyncSagaClient
from sagaline.services.orchestrator.api import saga_id_of
from sagaline.storage.db import sqlite_path
from tests.integration.support import EMBEDDED_SQLITE, Api, eventually, http_client, running_stack

ROOT = Path(__file__).resolve().parents[2]
ORDER_YAML = ROOT / "k8s" / "sagas" / "order.yaml"
TRAVEL_YAML = ROOT / "examples" / "travel" / "saga.yaml"
KINDS = ("flight", "hotel", "car")
TOKEN = "travel-test-token"
REFUSED_SHARE = 0.15  # of each partner's bookings
TRIPS = 200
ORDERS = 200
BEARER = {"Authorization": f"Bearer {TOKEN}"}
TRIP = {"traveller": "Ada", "destination": "LIS", "date": "2027-03-01", "nights": 3}


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stand-in partners (airline, hotels, cars) as the example runs them."""
    port = free_port()
    log = tmp_path_factory.mktemp("partner") / "partner.log"
    command = [sys.executable, "-m", "sagaline_travel.partner", "--port", str(port),
               "--refuse-share", str(REFUSED_SHARE)]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        async def answers() -> bool | None:
            assert process.poll() is None, log.read_text()
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{url}/stats")).status_code == 200 or None
            except httpx.TransportError:
                return None

        asyncio.run(eventually(answers, within=30, what="the partner answering"))
        yield url
    finally:
        process.terminate()  # a held answer may keep its graceful stop waiting: then kill it
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(partner: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("travel_stack")
    partners = {f"TRAVEL_{kind.upper()}_URL": f"{partner}/{kind}" for kind in KINDS}
    with running_stack(
        state_dir,
        EMBEDDED_SQLITE,
        saga_file=ORDER_YAML,
        more_saga_files=[TRAVEL_YAML],
        api_token=TOKEN,
        extra_env=partners,
    ) as running:
        yield running


@pytest.fixture
async def travel(stack: Stack) -> AsyncIterator[AsyncSagaClient]:
    async with AsyncSagaClient(stack.service_url("travel-orchestrator"), TOKEN) as client:
        yield client


async def partner_get(partner: str, path: str) -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{partner}{path}")
    return response.json() if response.status_code == 200 else None


async def place_orders(stack: Stack) -> list[str]:
    """Orders of the order saga, one in four beyond its customer's balance (compensated)."""
    gate = asyncio.Semaphore(16)
    async with http_client(headers=BEARER) as client:
        api = Api(stack, client)
        product = await api.product(ORDERS * 2)

        async def place(index: int) -> str:
            async with gate:
                customer = await api.account("20.00")
                price = "50.00" if index % 4 == 0 else "10.00"
                return str((await api.order(customer, (product, 1, price)))["id"])

        return list(await asyncio.gather(*(place(index) for index in range(ORDERS))))


async def test_hundreds_of_trips_beside_hundreds_of_orders_hold_every_invariant(
    stack: Stack, travel: AsyncSagaClient, partner: str
) -> None:
    gate = asyncio.Semaphore(16)

    async def trip(index: int) -> str:
        async with gate:
            started = await travel.start({**TRIP, "traveller": f"t{index}"}, f"trip-{index}")
            ended = await travel.wait(started.id, timeout=60)
            assert ended.ended, ended
            return ended.status

    statuses, order_ids = await asyncio.gather(
        asyncio.gather(*(trip(index) for index in range(TRIPS))), place_orders(stack)
    )
    completed = statuses.count("COMPLETED")
    assert completed + statuses.count("COMPENSATED") == TRIPS, statuses
    # Each partner refuses its share: about 1 - 0.85^3 of the trips are compensated.
    assert 0.2 * TRIPS < TRIPS - completed < 0.6 * TRIPS
    async with http_client() as client:
        api = Api(stack, client)
        decided = [await api.decided(order_id, within=60) for order_id in order_ids]
    assert {order["status"] for order in decided} == {"APPROVED", "REJECTED"}

    runner = CliRunner()
    where = ["--state-dir", str(stack.state_dir)]
    files = ["--saga-file", str(ORDER_YAML), "--saga-file", str(TRAVEL_YAML)]
    result = runner.invoke(app, ["verify", *where, *files])
    assert result.exit_code == 0, result.output
    assert "order: all invariants hold" in result.output
    assert "travel: all invariants hold" in result.output

    # The partners' books agree: one booking standing per completed trip and kind.
    for kind in KINDS:
        statuses = await partner_get(partner, f"/{kind}/bookings")
        assert list(statuses.values()).count("booked") == completed, kind


async def test_a_call_repeated_after_its_service_was_killed_books_once(
    stack: Stack, travel: AsyncSagaClient, partner: str
) -> None:
    idempotency_key = f"killed-{uuid.uuid4()}"
    saga_id = saga_id_of("travel", idempotency_key)
    apply_key = f"{saga_id}:flight:apply"
    async with httpx.AsyncClient(timeout=30) as client:
        control = f"{partner}/flight/control"
        normal = (await client.get(control)).json()
        # The airline books at once but never answers this key: no result can be recorded.
        held = {**normal, "refuse_share": 0, "delay_keys": [apply_key], "delay_times": 0,
                "delay_seconds": 120}  # fmt: skip
        assert (await client.put(control, json=held)).status_code == 200
        for kind in ("hotel", "car"):  # the rest of the trip goes through
            other = f"{partner}/{kind}/control"
            lenient = {**(await client.get(other)).json(), "refuse_share": 0}
            assert (await client.put(other, json=lenient)).status_code == 200
        try:
            stats_before = await partner_get(partner, "/flight/stats")
            await travel.start(TRIP, idempotency_key)

            async def booked() -> dict[str, Any] | None:
                booking = await partner_get(partner, f"/flight/bookings/{apply_key}")
                return booking if booking and booking["status"] == "booked" else None

            before = await eventually(booked, within=60, what="the airline's booking")
            stack.kill("travel-flight")  # between the call and its record
            database = sqlite_path(stack.urls["travel-flight"])
            with sqlite3.connect(database) as connection:
                outcomes = connection.execute(
                    "SELECT count(*) FROM step_outcome WHERE saga_id = ?", (saga_id.hex,)
                ).fetchone()[0]
                owed = connection.execute(
                    "SELECT calls FROM step_call WHERE saga_id = ?", (saga_id.hex,)
                ).fetchall()
            assert outcomes == 0 and owed and owed[0][0] >= 1, "called, not recorded"

            assert (await client.put(control, json={**held, "delay_keys": []})).status_code == 200
            assert "travel-flight" in stack.restart_dead()
            ended = await travel.wait(saga_id, timeout=60)
        finally:
            await client.put(control, json=normal)
            for kind in ("hotel", "car"):
                other = f"{partner}/{kind}/control"
                await client.put(other, json={**(await client.get(other)).json(),
                                              "refuse_share": REFUSED_SHARE})  # fmt: skip
    assert ended.status == "COMPLETED", ended
    after = await partner_get(partner, f"/flight/bookings/{apply_key}")
    assert after["booking_id"] == before["booking_id"], "the same booking"
    stats = await partner_get(partner, "/flight/stats")
    assert stats["bookings_made"] - stats_before["bookings_made"] == 1, "booked once"
    absorbed = stats["duplicates_absorbed"] - stats_before["duplicates_absorbed"]
    assert absorbed >= 1, "the call was made again, with the same key"
    assert ended.results["flight"]["flight_booking"] == before["booking_id"]
