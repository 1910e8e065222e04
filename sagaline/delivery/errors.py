"""Exceptions that decide what the consumer loop does with a message or a batch."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class Unprocessable(Exception):
    """The message can never be handled: it goes to a dead-letter topic with this reason.

    Handlers raise it before they change anything in the session.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_transient(exc: BaseException) -> bool:
    """A failure of the database connection rather than of the message: retry, never dead-letter."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError | ConnectionError | asyncio.TimeoutError)
