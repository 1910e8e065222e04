"""The stand-in partner's books: what one partner (an airline, a hotel chain, a car rental)
remembers of the bookings asked of it, keyed by the caller's idempotency key.

Kept in memory: the partner plays an outside system that stays up while sagaline's services are
killed and restarted around it, and a run starts it afresh (its counts are that run's). Nothing
here awaits, so each operation is atomic on the server's event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    BOOKED = "booked"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    # A cancellation came first: the booking of that key will be refused.
    CANCELLED_BEFORE_BOOKING = "cancelled-before-booking"


def share(kind: str, key: str, purpose: str) -> float:
    """Where `key` falls in [0, 1) for `purpose` ("refuse", "delay"): deterministic, so that a
    test can tell in advance which keys a partner refuses or delays."""
    digest = hashlib.sha256(f"{purpose}:{kind}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Behaviour(BaseModel):
    """What the partner is told to do: refuse a share of bookings (or given keys), delay the
    answer to a share of bookings (or given keys). A delayed booking is made at once and only
    its answer is late: the case an idempotency key exists for."""

    model_config = ConfigDict(extra="forbid")

    refuse_share: float = Field(0.0, ge=0, le=1)
    refuse_keys: set[str] = Field(default_factory=set, max_length=10_000)
    delay_seconds: float = Field(0.0, ge=0, le=3600)
    delay_share: float = Field(0.0, ge=0, le=1)
    delay_keys: set[str] = Field(default_factory=set, max_length=10_000)
    # How many requests of a delayed key are delayed (0: every one, the key never gets through).
    delay_times: int = Field(1, ge=0)

    def refuses(self, kind: str, key: str) -> bool:
        return key in self.refuse_keys or share(kind, key, "refuse") < self.refuse_share

    def delays(self, kind: str, key: str) -> bool:
        return key in self.delay_keys or share(kind, key, "delay") < self.delay_share


@dataclass
class Booking:
    """What the partner holds for one idempotency key."""

    key: str
    status: Status
    request: dict[str, Any]
    booking_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    requests: int = 0  # booking requests with this key (the first and its duplicates)

    def answer(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": str(self.status),
            "booking_id": self.booking_id,
            **self.details,
        }


@dataclass
class Stats:
    keys_seen: int = 0  # distinct keys of booking requests
    bookings_made: int = 0
    duplicates_absorbed: int = 0  # booking requests of a key seen before: nothing new done
    refusals: int = 0
    cancellations: int = 0  # bookings cancelled
    cancellations_before_booking: int = 0  # cancellations of a key not booked (yet)
    cancel_requests: int = 0

    def view(self, bookings_standing: int) -> dict[str, int]:
        return {**self.__dict__, "bookings_standing": bookings_standing}


class KeyReused(ValueError):
    """An idempotency key sent again with a different request."""


class Ledger:
    """One partner's bookings by idempotency key, its counts and its behaviour."""

    def __init__(self, kind: str, behaviour: Behaviour | None = None) -> None:
        self.kind = kind
        self.behaviour = behaviour or Behaviour()
        self.bookings: dict[str, Booking] = {}
        self.cancel_keys: dict[str, str] = {}  # a cancellation's own key -> the booking's key
        self.stats = Stats()
        self._numbers = 0

    def book(self, key: str, request: dict[str, Any], details: dict[str, Any]) -> Booking:
        """Book for `key` once: a key seen before answers what it answered then (a duplicate
        absorbed); a key refused or cancelled before is refused."""
        known = self.bookings.get(key)
        if known is not None and known.status is Status.CANCELLED_BEFORE_BOOKING:
            known.request = request
            known.status = Status.REFUSED
            known.reason = "cancelled before it was booked"
            known.requests = 1
            self.stats.keys_seen += 1
            self.stats.refusals += 1
            return known
        if known is not None:
            if known.request != request:
                raise KeyReused(f"Idempotency-Key {key!r} was used with a different request")
            known.requests += 1
            self.stats.duplicates_absorbed += 1
            return known
        self.stats.keys_seen += 1
        if self.behaviour.refuses(self.kind, key):
            booking = Booking(key, Status.REFUSED, request, reason=f"no {self.kind} available")
            self.stats.refusals += 1
        else:
            self._numbers += 1
            booking_id = f"{self.kind[:2].upper()}-{self._numbers:06d}"
            booking = Booking(key, Status.BOOKED, request, booking_id, details)
            self.stats.bookings_made += 1
        booking.requests = 1
        self.bookings[key] = booking
        return booking

    def cancel(self, key: str, cancel_key: str) -> Booking:
        """Cancel the booking made with `key` (idempotent). If none was made, remember the
        cancellation, so that a later booking with `key` is refused."""
        earlier = self.cancel_keys.setdefault(cancel_key, key)
        if earlier != key:
            raise KeyReused(f"Idempotency-Key {cancel_key!r} was used to cancel {earlier!r}")
        self.stats.cancel_requests += 1
        booking = self.bookings.get(key)
        if booking is None:
            booking = Booking(key, Status.CANCELLED_BEFORE_BOOKING, {})
            self.bookings[key] = booking
            self.stats.cancellations_before_booking += 1
        elif booking.status is Status.BOOKED:
            booking.status = Status.CANCELLED
            self.stats.cancellations += 1
        return booking

    def delays(self, booking: Booking) -> bool:
        """Whether the answer to this request of `booking` is to be late."""
        if not self.behaviour.delay_seconds or not self.behaviour.delays(self.kind, booking.key):
            return False
        times = self.behaviour.delay_times
        return times == 0 or booking.requests <= times

    def standing(self) -> int:
        return sum(1 for b in self.bookings.values() if b.status is Status.BOOKED)

    def view(self) -> dict[str, int]:
        return self.stats.view(self.standing())
