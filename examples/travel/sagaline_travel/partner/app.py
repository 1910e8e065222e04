"""The stand-in partner's HTTP API, one set of routes per kind under `/<kind>`:

- `POST /<kind>/bookings` (`Idempotency-Key` required): 201 the booking the first time a key is
  seen, 200 the same booking for the same key again, 409 `{"detail": reason}` when refused;
- `POST /<kind>/bookings/{key}/cancel` (its own `Idempotency-Key` required): cancels the booking
  made with `key`, or remembers the cancellation so that a later booking with `key` is refused;
- `GET /<kind>/bookings` (every key's status), `GET /<kind>/bookings/{key}`, `GET /<kind>/stats`,
  `GET /stats` (every kind);
- `GET|PUT /<kind>/control`: what the partner refuses and delays (a `Behaviour`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Header, HTTPException, Path, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from sagaline_travel.partner.kinds import KINDS, Kind
from sagaline_travel.partner.ledger import Behaviour, Booking, KeyReused, Ledger, Status

KEY_MAX = 200
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=KEY_MAX)]
BookingKey = Annotated[str, Path(min_length=1, max_length=KEY_MAX)]


def _validated(kind: Kind, body: Any) -> BaseModel:
    """The request as the kind's model reads it, else a 422 naming the field."""
    try:
        return kind.request.model_validate(body)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None


def _answer(booking: Booking, response: Response, created: bool) -> dict[str, Any]:
    if booking.status is Status.REFUSED:
        raise HTTPException(409, booking.reason)
    if booking.status is Status.CANCELLED:
        raise HTTPException(409, f"booking {booking.booking_id} was cancelled")
    response.status_code = 201 if created else 200
    return booking.answer()


def kind_router(kind: Kind, ledger: Ledger) -> APIRouter:
    router = APIRouter(prefix=f"/{kind.name}", tags=[kind.name])

    @router.post("/bookings", status_code=201)
    async def book(
        idempotency_key: IdempotencyKey, response: Response, body: Annotated[Any, Body()]
    ) -> dict[str, Any]:
        request = _validated(kind, body)
        try:
            booking = ledger.book(
                idempotency_key, request.model_dump(mode="json"), kind.details(request)
            )
        except KeyReused as exc:
            raise HTTPException(422, str(exc)) from None
        if ledger.delays(booking):  # booked already: only the answer is late
            await asyncio.sleep(ledger.behaviour.delay_seconds)
        return _answer(booking, response, created=booking.requests == 1)

    @router.post("/bookings/{key}/cancel")
    async def cancel(key: BookingKey, idempotency_key: IdempotencyKey) -> dict[str, Any]:
        try:
            return ledger.cancel(key, idempotency_key).answer()
        except KeyReused as exc:
            raise HTTPException(422, str(exc)) from None

    @router.get("/bookings")
    async def bookings() -> dict[str, str]:
        """Every key's status: what a check of many sagas reads in one request."""
        return {key: str(booking.status) for key, booking in ledger.bookings.items()}

    @router.get("/bookings/{key}")
    async def booking(key: BookingKey) -> dict[str, Any]:
        found = ledger.bookings.get(key)
        if found is None:
            raise HTTPException(404, f"no booking request with key {key!r}")
        return {**found.answer(), "reason": found.reason, "requests": found.requests}

    @router.get("/stats")
    async def stats() -> dict[str, int]:
        return ledger.view()

    @router.get("/control")
    async def get_control() -> Behaviour:
        return ledger.behaviour

    @router.put("/control")
    async def put_control(behaviour: Behaviour) -> Behaviour:
        ledger.behaviour = behaviour
        return behaviour

    return router


def create_app(kinds: Iterable[str] = KINDS, behaviour: Behaviour | None = None) -> FastAPI:
    """A partner serving `kinds`, each with its own ledger, all starting with `behaviour`."""
    names = list(kinds)
    unknown = sorted(set(names) - set(KINDS))
    if unknown or not names:
        raise ValueError(f"unknown partner kinds {unknown}: choose among {sorted(KINDS)}")
    ledgers = {
        name: Ledger(name, (behaviour or Behaviour()).model_copy(deep=True)) for name in names
    }
    app = FastAPI(title="sagaline travel: stand-in partner")
    app.state.ledgers = ledgers
    for name, ledger in ledgers.items():
        app.include_router(kind_router(KINDS[name], ledger))

    @app.get("/stats")
    async def stats() -> dict[str, dict[str, int]]:
        return {name: ledger.view() for name, ledger in ledgers.items()}

    return app
