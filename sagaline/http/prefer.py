"""RFC 7240 `Prefer: wait=N`: how long a request may wait for an outcome before it answers."""

from __future__ import annotations

import math

MAX_WAIT_S = 30


def preferred_wait(prefer: str | None) -> float:
    """The seconds of an RFC 7240 `Prefer: wait=N` (0 if absent or unreadable, which the RFC
    says to ignore), at most MAX_WAIT_S."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return 0.0
            return 0.0 if math.isnan(seconds) else min(max(seconds, 0.0), MAX_WAIT_S)
    return 0.0
