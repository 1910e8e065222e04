"""The API token: with `SAGALINE_API_TOKEN` set, every mutating request needs
`Authorization: Bearer <token>`; reads (GET, HEAD, OPTIONS) stay open. A request that must never
be open (the orchestrator's `POST /sagas`) needs the token always: refused while none is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}

# auto_error=False: a missing or malformed header gets our 401 (with the challenge), not FastAPI's.
bearer = HTTPBearer(auto_error=False, description="SAGALINE_API_TOKEN, for every mutating request")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def token_guard(token: SecretStr | None) -> Callable[[Request, Credentials], Awaitable[None]]:
    """A dependency that refuses a mutating request without the token (no-op without a token)."""
    expected = token.get_secret_value().encode() if token is not None else None

    async def require_token(request: Request, credentials: Credentials) -> None:
        if expected is None or request.method in READ_METHODS:
            return
        _check(credentials, expected)

    return require_token


def require_configured_token(
    token: SecretStr | None, credentials: HTTPAuthorizationCredentials | None, what: str
) -> None:
    """Refuse `what` unless a token is configured and the request carries it: for a request
    that must never be open, even on a service started without a token (secure by default)."""
    if token is None:
        raise HTTPException(
            403,
            f"{what} needs an API token and this service has none: set SAGALINE_API_TOKEN "
            "(a Saga's spec.apiToken) and send it as Authorization: Bearer <token>",
        )
    _check(credentials, token.get_secret_value().encode())


def _check(credentials: HTTPAuthorizationCredentials | None, expected: bytes) -> None:
    if credentials is None:
        raise HTTPException(401, "this request needs Authorization: Bearer <token>", CHALLENGE)
    # Bytes, so that a non-ASCII header cannot make compare_digest raise; constant time.
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(401, "the bearer token is not valid", CHALLENGE)
