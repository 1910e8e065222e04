"""The car step: a car from the flight's arrival to the hotel's check-out (both results of the
steps before it); cancel the rental to compensate."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sagaline.sdk import CallContext, CallPolicy, Rejected, Step
from sagaline_travel.partners import Refused, book, cancel


class RentCar(BaseModel):
    model_config = ConfigDict(extra="ignore")

    traveller: str = Field(min_length=1, max_length=200)
    destination: str = Field(min_length=1, max_length=200)
    arrival: dt.datetime  # the flight step's result
    check_out: dt.date  # the hotel step's result


car = Step(
    "car",
    command=RentCar,
    calls=CallPolicy(timeout_seconds=2.0, max_attempts=5, backoff_seconds=0.2),
)


@car.apply
async def rent_car(ctx: CallContext, command: RentCar) -> dict[str, Any] | Rejected:
    request = {
        "traveller": command.traveller,
        "destination": command.destination,
        "pickup": command.arrival.isoformat(),
        "dropoff": command.check_out.isoformat(),
    }
    try:
        booking = await book(ctx.http, "car", request)
    except Refused as refusal:
        return Rejected(refusal.reason)
    return {"car_booking": booking["booking_id"]}


@car.undo
async def cancel_car(ctx: CallContext, result: dict[str, Any] | None) -> None:
    await cancel(ctx.http, "car", ctx.apply_key)
