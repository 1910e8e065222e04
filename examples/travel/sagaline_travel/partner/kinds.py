"""The three kinds of partner: what each is asked to book and what it answers besides the
booking's id (a flight its arrival, a hotel its check-out)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traveller: str = Field(min_length=1, max_length=200)
    destination: str = Field(min_length=1, max_length=200)


class FlightRequest(_Request):
    date: dt.date


class HotelRequest(_Request):
    check_in: dt.date
    nights: int = Field(ge=1, le=60)


class CarRequest(_Request):
    pickup: dt.datetime
    dropoff: dt.date


def _arrival(request: BaseModel) -> dict[str, Any]:
    """The flight's arrival on its date, at an hour that depends on the destination."""
    assert isinstance(request, FlightRequest)
    minutes = 6 * 60 + int(hashlib.sha256(request.destination.encode()).hexdigest(), 16) % (16 * 60)
    arrival = dt.datetime.combine(request.date, dt.time()) + dt.timedelta(minutes=minutes)
    return {"arrival": arrival.isoformat(timespec="minutes")}


def _check_out(request: BaseModel) -> dict[str, Any]:
    assert isinstance(request, HotelRequest)
    return {"check_out": (request.check_in + dt.timedelta(days=request.nights)).isoformat()}


def _nothing(request: BaseModel) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Kind:
    name: str
    request: type[BaseModel]
    details: Callable[[BaseModel], dict[str, Any]]


KINDS = {
    kind.name: kind
    for kind in (
        Kind("flight", FlightRequest, _arrival),
        Kind("hotel", HotelRequest, _check_out),
        Kind("car", CarRequest, _nothing),
    )
}
