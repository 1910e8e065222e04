"""Calling the partners from the steps: where each partner is, a booking, a cancellation.

Each step passes its `ctx.http` (the SDK's client, whose requests carry the call's
`Idempotency-Key` and time-out), so the partner sees the same key on every repeat of a call.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_PARTNERS = "http://127.0.0.1:9100"  # `python -m sagaline_travel.partner`'s default


class Refused(Exception):
    """The partner said no (a business answer: repeating the call would not change it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def partner_url(kind: str) -> str:
    """The partner of `kind`: TRAVEL_<KIND>_URL, else the local stand-in's path for it."""
    return os.environ.get(f"TRAVEL_{kind.upper()}_URL", f"{DEFAULT_PARTNERS}/{kind}").rstrip("/")


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


async def book(http: httpx.AsyncClient, kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """The partner's booking (its id and details). Raises `Refused` when the partner refuses
    (409) or rejects the request as invalid (422: repeating it cannot help), and
    `httpx.HTTPError` for anything worth repeating (time-out, connection, 5xx)."""
    response = await http.post(f"{partner_url(kind)}/bookings", json=request)
    if response.status_code == 409:
        raise Refused(_detail(response))
    if response.status_code == 422:
        raise Refused(f"the {kind} partner rejected the request: {_detail(response)}")
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


async def cancel(http: httpx.AsyncClient, kind: str, apply_key: str) -> dict[str, Any]:
    """Cancel the booking made with `apply_key` (the partner remembers the cancellation if that
    booking never reached it). Raises `httpx.HTTPError` when it must be repeated."""
    response = await http.post(f"{partner_url(kind)}/bookings/{apply_key}/cancel")
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer
