"""Re-send timing shared by every sender: exponential backoff, capped."""

from __future__ import annotations

BACKOFF_CAP = 8  # the n-th attempt waits timeout * min(2 ** (n - 1), BACKOFF_CAP)


def attempt_timeout_s(timeout_s: float, attempt: int) -> float:
    """How long attempt number `attempt` (from 1) waits for its answer."""
    return timeout_s * min(2 ** (attempt - 1), BACKOFF_CAP)


def resend_horizon_s(timeout_s: float, attempts: int) -> float:
    """From the first send to the moment the last attempt gives up."""
    return sum(attempt_timeout_s(timeout_s, attempt) for attempt in range(1, attempts + 1))
