"""The travel example's steps driven by the SDK as the consumer and its worker drive them, on a
real SQLite database, against the stand-in partner as a real server (`python -m
sagaline_travel.partner`): a booking recorded once; an answer that times out repeated with the
same key and absorbed by the partner; a call whose record was lost (its process died between
the call and the record) repeated with the same key, the partner counting one booking; a
refusal and a compensation that cancels by the apply's key."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from sagaline.delivery.calling_participant import CallingParticipant
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.step_calls import STEP_CALLS
from sagaline.domain.clock import utcnow
from sagaline.domain.definition import SagaDefinition
from sagaline.lab.ports import free_port
from sagaline.settings import Settings
from sagaline.storage.db import Database
from sagaline.storage.tables import OutboxMessage, table_of
from sagaline_travel.flight import BookFlight, flight
from tests.unit import calling_harness as harness
from tests.unit.calling_harness import consume, drain, replies, step_database

OUTBOX = table_of(OutboxMessage)
START = {"traveller": "Ada", "destination": "LIS", "date": "2027-03-01", "nights": 3}
DEFINITION = SagaDefinition.model_validate(
    {"metadata": {"name": "order"}, "spec": {"steps": [{"name": "flight"}]}}
)


@pytest.fixture
def partner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "partner.log").open("wb")
    command = [sys.executable, "-m", "sagaline_travel.partner", "--port", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/stats", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
    monkeypatch.setenv("TRAVEL_FLIGHT_URL", f"{url}/flight")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with step_database(tmp_path / "flight.db") as database:
        yield database


def handler() -> CallingParticipant:
    made = flight.participant(DEFINITION, Settings(timer_interval_s=0.01))
    assert isinstance(made, CallingParticipant)
    return made


def message(step: CallingParticipant, kind: str, saga_id: uuid.UUID) -> Incoming:
    return harness.message(step, kind, saga_id, START)


async def ask(method: str, url: str, **options: Any) -> Any:
    """The partner's answer (JSON) to one request."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(method, url, **options)
    assert response.status_code == 200, response.text
    return response.json()


async def stats(partner: str) -> dict[str, Any]:
    return dict(await ask("GET", f"{partner}/flight/stats"))


async def test_a_booking_is_made_once_and_its_result_replied(partner: str, db: Database) -> None:
    step, saga_id = handler(), uuid.uuid4()
    await consume(db, step, message(step, "command", saga_id))
    await drain(db, step)
    (done,) = await replies(db)
    assert done.type == "flight.executed"
    assert done.payload["flight_booking"].startswith("FL-")
    assert done.payload["arrival"].startswith("2027-03-01T")
    assert (await stats(partner))["bookings_made"] == 1


async def test_an_answer_that_times_out_is_repeated_with_the_same_key(
    partner: str, db: Database
) -> None:
    step, saga_id = handler(), uuid.uuid4()
    key = f"{saga_id}:flight:apply"
    control = {"delay_keys": [key], "delay_seconds": 3, "delay_times": 1}
    await ask("PUT", f"{partner}/flight/control", json=control)
    await consume(db, step, message(step, "command", saga_id))
    await drain(db, step)
    assert [r.type for r in await replies(db)] == ["flight.executed"]
    counts = await stats(partner)
    assert (counts["keys_seen"], counts["bookings_made"], counts["duplicates_absorbed"]) == (
        1,
        1,
        1,
    )


async def test_a_call_whose_record_was_lost_books_once(partner: str, db: Database) -> None:
    first, saga_id = handler(), uuid.uuid4()
    await consume(db, first, message(first, "command", saga_id))
    (claimed,) = await first._claim(db)
    await first.call_apply(saga_id, BookFlight.model_validate(START), claimed.calls)
    async with db.transaction() as session:  # the process died; its lease runs out
        await session.execute(update(STEP_CALLS).values(due_at=utcnow()))
    restarted = handler()
    await drain(db, restarted)
    (done,) = await replies(db)
    assert done.type == "flight.executed"
    counts = await stats(partner)
    assert (counts["bookings_made"], counts["duplicates_absorbed"]) == (1, 1)


async def test_a_compensation_cancels_the_booking_by_the_apply_key(
    partner: str, db: Database
) -> None:
    step, saga_id = handler(), uuid.uuid4()
    await consume(db, step, message(step, "command", saga_id))
    await drain(db, step)
    await consume(db, step, message(step, "compensation", saga_id))
    await drain(db, step)
    assert [r.type for r in await replies(db)] == ["flight.executed", "flight.compensated"]
    booking = await ask("GET", f"{partner}/flight/bookings/{saga_id}:flight:apply")
    assert booking["status"] == "cancelled"
    counts = await stats(partner)
    assert (counts["cancellations"], counts["bookings_standing"]) == (1, 0)


async def test_a_refusal_fails_the_step(partner: str, db: Database) -> None:
    step, saga_id = handler(), uuid.uuid4()
    key = f"{saga_id}:flight:apply"
    await ask("PUT", f"{partner}/flight/control", json={"refuse_keys": [key]})
    await consume(db, step, message(step, "command", saga_id))
    await drain(db, step)
    (failed,) = await replies(db)
    assert (failed.type, failed.payload["reason"]) == ("flight.failed", "no flight available")
