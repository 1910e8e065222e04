"""The flight step: book a seat with the airline; cancel it to compensate. Its result carries the
arrival, which the hotel and the car steps receive in their commands."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sagaline.sdk import CallContext, CallPolicy, Rejected, Step
from sagaline_travel.partners import Refused, book, cancel


class BookFlight(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the payload carries other steps' keys too

    traveller: str = Field(min_length=1, max_length=200)
    destination: str = Field(min_length=1, max_length=200)
    date: dt.date


flight = Step(
    "flight",
    command=BookFlight,
    calls=CallPolicy(timeout_seconds=2.0, max_attempts=5, backoff_seconds=0.2),
)


@flight.apply
async def book_flight(ctx: CallContext, command: BookFlight) -> dict[str, Any] | Rejected:
    try:
        booking = await book(ctx.http, "flight", command.model_dump(mode="json"))
    except Refused as refusal:
        return Rejected(refusal.reason)
    return {"flight_booking": booking["booking_id"], "arrival": booking["arrival"]}


@flight.undo
async def cancel_flight(ctx: CallContext, result: dict[str, Any] | None) -> None:
    # By the apply's key, not by result["flight_booking"]: result is None when the booking's
    # answer never came back (it timed out), and the booking may stand all the same.
    await cancel(ctx.http, "flight", ctx.apply_key)
