"""At most once every so often: what keeps a metric's measurement off the hot path."""

from __future__ import annotations

import time


class Every:
    """`due()` is True at most once every `interval_s` seconds (and on the first call)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    def reset(self) -> None:
        """The next `due()` is True."""
        self._next = 0.0
