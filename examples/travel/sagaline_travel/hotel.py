"""The hotel step: book the nights from the flight's arrival (a result of the flight step, in
this step's command); cancel the booking to compensate."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sagaline.sdk import CallContext, CallPolicy, Rejected, Step
from sagaline_travel.partners import Refused, book, cancel


class BookHotel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    traveller: str = Field(min_length=1, max_length=200)
    destination: str = Field(min_length=1, max_length=200)
    nights: int = Field(ge=1, le=60)
    arrival: dt.datetime  # the flight step's result


hotel = Step(
    "hotel",
    command=BookHotel,
    calls=CallPolicy(timeout_seconds=2.0, max_attempts=5, backoff_seconds=0.2),
)


@hotel.apply
async def book_hotel(ctx: CallContext, command: BookHotel) -> dict[str, Any] | Rejected:
    request = {
        "traveller": command.traveller,
        "destination": command.destination,
        "check_in": command.arrival.date().isoformat(),
        "nights": command.nights,
    }
    try:
        booking = await book(ctx.http, "hotel", request)
    except Refused as refusal:
        return Rejected(refusal.reason)
    return {"hotel_booking": booking["booking_id"], "check_out": booking["check_out"]}


@hotel.undo
async def cancel_hotel(ctx: CallContext, result: dict[str, Any] | None) -> None:
    await cancel(ctx.http, "hotel", ctx.apply_key)
