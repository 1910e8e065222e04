"""How the travel steps call their partners (sagaline_travel.partners), against the stand-in
partner's real app: a booking, a refusal the step turns into a rejection, a cancellation by the
apply's key, and the errors left for the SDK to repeat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from sagaline.lab.ports import free_port
from sagaline_travel.partner.app import create_app
from sagaline_travel.partner.ledger import Behaviour
from sagaline_travel.partners import DEFAULT_PARTNERS, Refused, book, cancel, partner_url

FLIGHT = {"traveller": "Ada", "destination": "LIS", "date": "2027-03-01"}
Client = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    """Clients to one stand-in partner, each with its idempotency key, as the SDK's ctx.http."""
    monkeypatch.setenv("TRAVEL_FLIGHT_URL", "http://partner/flight/")
    app = create_app(behaviour=Behaviour(refuse_keys={"refused:flight:apply"}))
    made: list[httpx.AsyncClient] = []

    def make(key: str) -> httpx.AsyncClient:
        made.append(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), headers={"Idempotency-Key": key}
            )
        )
        return made[-1]

    yield make
    for http in made:
        await http.aclose()


def test_the_partner_is_found_by_its_variable_else_on_the_local_stand_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRAVEL_HOTEL_URL", raising=False)
    assert partner_url("hotel") == f"{DEFAULT_PARTNERS}/hotel"
    monkeypatch.setenv("TRAVEL_HOTEL_URL", "https://hotels.example/api/")
    assert partner_url("hotel") == "https://hotels.example/api"


async def test_a_booking_repeated_with_its_key_answers_the_same_booking(client: Client) -> None:
    first = await book(client("s1:flight:apply"), "flight", FLIGHT)
    again = await book(client("s1:flight:apply"), "flight", FLIGHT)
    assert first["booking_id"] == again["booking_id"]
    assert first["arrival"].startswith("2027-03-01T")


async def test_a_refusal_is_raised_with_the_partners_reason(client: Client) -> None:
    with pytest.raises(Refused) as refused:
        await book(client("refused:flight:apply"), "flight", FLIGHT)
    assert refused.value.reason == "no flight available"


async def test_an_invalid_request_is_a_refusal_not_something_to_repeat(client: Client) -> None:
    with pytest.raises(Refused, match="rejected the request") as refused:
        await book(client("s2:flight:apply"), "flight", {"traveller": "Ada"})
    assert "destination" in refused.value.reason


async def test_the_cancellation_goes_by_the_apply_key_with_its_own_key(client: Client) -> None:
    booked = await book(client("s3:flight:apply"), "flight", FLIGHT)
    cancelled = await cancel(client("s3:flight:undo"), "flight", "s3:flight:apply")
    assert (cancelled["status"], cancelled["booking_id"]) == ("cancelled", booked["booking_id"])
    first = await cancel(client("s4:flight:undo"), "flight", "s4:flight:apply")
    assert first["status"] == "cancelled-before-booking"
    with pytest.raises(Refused, match="cancelled before it was booked"):
        await book(client("s4:flight:apply"), "flight", FLIGHT)


async def test_a_partner_out_of_reach_raises_for_the_sdk_to_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAVEL_CAR_URL", f"http://127.0.0.1:{free_port()}/car")
    async with httpx.AsyncClient(headers={"Idempotency-Key": "s5:car:apply"}) as http:
        with pytest.raises(httpx.ConnectError):
            await book(http, "car", {})
        with pytest.raises(httpx.ConnectError):
            await cancel(http, "car", "s5:car:apply")
