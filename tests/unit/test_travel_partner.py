"""The travel example's stand-in partner (examples/travel/sagaline_travel/partner), through its
real HTTP app in process: one booking per idempotency key, duplicates absorbed and counted,
cancellation by the booking's key (before the booking too), refusals a test can predict."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sagaline_travel.partner.app import create_app
from sagaline_travel.partner.ledger import Behaviour, Ledger, share

FLIGHT = {"traveller": "Ada", "destination": "LIS", "date": "2027-03-01"}
HOTEL = {"traveller": "Ada", "destination": "LIS", "check_in": "2027-03-01", "nights": 3}


@pytest.fixture
def app() -> FastAPI:
    return create_app()


@pytest.fixture
async def partner(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://partner") as client:
        yield client


async def book(
    partner: httpx.AsyncClient, key: str, body: dict[str, Any] = FLIGHT, kind: str = "flight"
) -> httpx.Response:
    return await partner.post(f"/{kind}/bookings", json=body, headers={"Idempotency-Key": key})


async def cancel(
    partner: httpx.AsyncClient, key: str, cancel_key: str, kind: str = "flight"
) -> httpx.Response:
    return await partner.post(
        f"/{kind}/bookings/{key}/cancel", headers={"Idempotency-Key": cancel_key}
    )


async def stats(partner: httpx.AsyncClient, kind: str = "flight") -> dict[str, int]:
    response = await partner.get(f"/{kind}/stats")
    assert response.status_code == 200
    return dict(response.json())


async def test_a_booking_without_an_idempotency_key_is_refused_naming_the_header(
    partner: httpx.AsyncClient,
) -> None:
    response = await partner.post("/flight/bookings", json=FLIGHT)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert (await stats(partner))["keys_seen"] == 0


async def test_the_same_key_books_once_and_answers_the_same_booking(
    partner: httpx.AsyncClient,
) -> None:
    first = await book(partner, "s1:flight:apply")
    again = await book(partner, "s1:flight:apply")
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert first.json()["status"] == "booked"
    assert first.json()["booking_id"]
    assert await stats(partner) == {
        "keys_seen": 1,
        "bookings_made": 1,
        "duplicates_absorbed": 1,
        "refusals": 0,
        "cancellations": 0,
        "cancellations_before_booking": 0,
        "cancel_requests": 0,
        "bookings_standing": 1,
    }


async def test_different_keys_make_different_bookings(partner: httpx.AsyncClient) -> None:
    ids = {(await book(partner, f"s{n}:flight:apply")).json()["booking_id"] for n in range(5)}
    assert len(ids) == 5
    assert (await stats(partner))["bookings_made"] == 5


async def test_a_bad_request_names_the_field_and_books_nothing(partner: httpx.AsyncClient) -> None:
    response = await book(partner, "s1:flight:apply", {"traveller": "Ada", "destination": "LIS"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "date"]
    assert (await stats(partner))["keys_seen"] == 0


async def test_a_key_reused_with_another_request_is_refused_and_the_booking_stays(
    partner: httpx.AsyncClient,
) -> None:
    first = await book(partner, "s1:flight:apply")
    other = await book(partner, "s1:flight:apply", {**FLIGHT, "destination": "OPO"})
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    found = await partner.get("/flight/bookings/s1:flight:apply")
    assert found.json()["booking_id"] == first.json()["booking_id"]
    assert found.json()["status"] == "booked"
    assert (await stats(partner))["bookings_made"] == 1


async def test_a_flight_answers_its_arrival_and_a_hotel_its_check_out(
    partner: httpx.AsyncClient,
) -> None:
    flight = (await book(partner, "s1:flight:apply")).json()
    assert flight["arrival"].startswith("2027-03-01T")
    hotel = (await book(partner, "s1:hotel:apply", HOTEL, kind="hotel")).json()
    assert hotel["check_out"] == "2027-03-04"


async def test_each_kind_keeps_its_own_books(partner: httpx.AsyncClient) -> None:
    assert (await book(partner, "same-key")).status_code == 201
    assert (await book(partner, "same-key", HOTEL, kind="hotel")).status_code == 201
    every = (await partner.get("/stats")).json()
    assert sorted(every) == ["car", "flight", "hotel"]
    assert [every[k]["bookings_made"] for k in ("flight", "hotel", "car")] == [1, 1, 0]


async def test_a_share_of_bookings_is_refused_as_share_predicts(
    app: FastAPI, partner: httpx.AsyncClient
) -> None:
    response = await partner.put("/flight/control", json={"refuse_share": 0.4})
    assert response.status_code == 200
    keys = [f"saga-{n}:flight:apply" for n in range(60)]
    predicted = {key for key in keys if share("flight", key, "refuse") < 0.4}
    assert 0 < len(predicted) < len(keys)  # the test shows both answers
    refused = set()
    for key in keys:
        response = await book(partner, key)
        if response.status_code == 409:
            assert response.json()["detail"] == "no flight available"
            refused.add(key)
        else:
            assert response.status_code == 201, response.text
    assert refused == predicted
    again = await book(partner, sorted(refused)[0])  # a refusal is answered again, not re-decided
    assert again.status_code == 409
    counts = await stats(partner)
    assert counts["refusals"] == len(predicted)
    assert counts["bookings_made"] == len(keys) - len(predicted)
    assert counts["duplicates_absorbed"] == 1
    # Another kind decides on its own share: it refuses other keys.
    assert {k for k in keys if share("hotel", k, "refuse") < 0.4} != predicted


async def test_given_keys_are_refused(partner: httpx.AsyncClient) -> None:
    await partner.put("/car/control", json={"refuse_keys": ["s9:car:apply"]})
    body = {
        "traveller": "Ada",
        "destination": "LIS",
        "pickup": "2027-03-01T14:05",
        "dropoff": "2027-03-04",
    }
    assert (await book(partner, "s9:car:apply", body, kind="car")).status_code == 409
    assert (await book(partner, "s8:car:apply", body, kind="car")).status_code == 201


async def test_a_bad_control_names_the_field(partner: httpx.AsyncClient) -> None:
    response = await partner.put("/flight/control", json={"refuse_share": 2})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "refuse_share"]
    assert (await partner.get("/flight/control")).json()["refuse_share"] == 0


async def test_cancelling_a_booking_is_idempotent_and_a_later_repeat_is_refused(
    partner: httpx.AsyncClient,
) -> None:
    booked = (await book(partner, "s1:flight:apply")).json()
    first = await cancel(partner, "s1:flight:apply", "s1:flight:undo")
    again = await cancel(partner, "s1:flight:apply", "s1:flight:undo")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["status"] == "cancelled"
    assert first.json()["booking_id"] == booked["booking_id"]
    late = await book(partner, "s1:flight:apply")
    assert late.status_code == 409
    assert late.json()["detail"] == f"booking {booked['booking_id']} was cancelled"
    counts = await stats(partner)
    assert (counts["bookings_made"], counts["cancellations"], counts["bookings_standing"]) == (
        1,
        1,
        0,
    )
    assert counts["cancel_requests"] == 2


async def test_a_cancellation_before_the_booking_refuses_the_booking(
    partner: httpx.AsyncClient,
) -> None:
    """The apply timed out and the saga is compensated: the undo comes first (or alone); the
    apply's request arriving late must not leave a booking standing."""
    response = await cancel(partner, "s2:flight:apply", "s2:flight:undo")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled-before-booking"
    assert response.json()["booking_id"] is None
    late = await book(partner, "s2:flight:apply")
    assert late.status_code == 409
    assert late.json()["detail"] == "cancelled before it was booked"
    counts = await stats(partner)
    assert counts["bookings_made"] == counts["bookings_standing"] == 0
    assert counts["cancellations_before_booking"] == 1


async def test_a_cancellation_needs_its_own_key_used_for_one_booking_only(
    partner: httpx.AsyncClient,
) -> None:
    missing = await partner.post("/flight/bookings/s1:flight:apply/cancel")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    await book(partner, "s1:flight:apply")
    await book(partner, "s2:flight:apply")
    assert (await cancel(partner, "s1:flight:apply", "undo-key")).status_code == 200
    reused = await cancel(partner, "s2:flight:apply", "undo-key")
    assert reused.status_code == 422
    assert (await stats(partner))["bookings_standing"] == 1


async def test_every_keys_status_is_listed(partner: httpx.AsyncClient) -> None:
    await book(partner, "s1:flight:apply")
    await book(partner, "s2:flight:apply")
    await cancel(partner, "s2:flight:apply", "s2:flight:undo")
    await cancel(partner, "s3:flight:apply", "s3:flight:undo")
    listed = (await partner.get("/flight/bookings")).json()
    assert listed == {
        "s1:flight:apply": "booked",
        "s2:flight:apply": "cancelled",
        "s3:flight:apply": "cancelled-before-booking",
    }


async def test_an_unknown_booking_is_not_found(partner: httpx.AsyncClient) -> None:
    response = await partner.get("/flight/bookings/nobody")
    assert response.status_code == 404


def test_a_delayed_key_is_late_as_many_times_as_told() -> None:
    ledger = Ledger("flight", Behaviour(delay_seconds=5, delay_keys={"k"}, delay_times=1))
    first = ledger.book("k", FLIGHT, {})
    assert ledger.delays(first)
    assert not ledger.delays(ledger.book("k", FLIGHT, {}))  # its retry gets through
    assert not ledger.delays(ledger.book("other", FLIGHT, {}))
    ledger.behaviour = Behaviour(delay_seconds=5, delay_keys={"k"}, delay_times=0)
    assert ledger.delays(ledger.book("k", FLIGHT, {}))  # 0: every request of it


def test_a_delay_share_is_predictable() -> None:
    ledger = Ledger("hotel", Behaviour(delay_seconds=1, delay_share=0.5))
    keys = [f"saga-{n}:hotel:apply" for n in range(40)]
    delayed = {key for key in keys if ledger.delays(ledger.book(key, HOTEL, {}))}
    assert delayed == {key for key in keys if share("hotel", key, "delay") < 0.5}
    assert 0 < len(delayed) < len(keys)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown partner kinds"):
        create_app(["train"])
