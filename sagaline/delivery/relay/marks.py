"""Rows the broker acknowledged that an SQLite relay has not marked published yet.

Marking is a write transaction: on SQLite it takes the database's one write lock, which the
service's own transactions then wait for. At a few messages per batch, one per batch cost about
as much as the rest of the batch. An SQLite relay therefore marks what was acknowledged at most
every `delay_s` (or once `limit` rows wait), and reads only rows past the last one it sent
(`after`): SQLite has one writer, so a row committed later always has a higher seq than every
row already read. A relay that dies first sends the unmarked rows again when it (or the next
leader) starts: duplicates, which every consumer's inbox drops, never a lost or reordered row.
PostgreSQL commits out of seq order and marks every batch at once (one autocommit statement).
"""

from __future__ import annotations

import time
from collections.abc import Iterable


class AcknowledgedRows:
    """The seqs acknowledged and not yet marked, and when they are due to be marked."""

    def __init__(self, delay_s: float, limit: int, *, seq_is_commit_order: bool) -> None:
        self.delay_s = delay_s
        self.limit = limit
        self.seq_is_commit_order = seq_is_commit_order
        self.after = 0  # the next read starts past this seq (kept 0 unless seq is commit order)
        self._seqs: list[int] = []
        self._first_at = 0.0

    def add(self, seqs: Iterable[int], after: int) -> None:
        if not self._seqs:
            self._first_at = time.monotonic()
        self._seqs.extend(seqs)
        if self.seq_is_commit_order:
            self.after = max(self.after, after)

    def due(self) -> bool:
        return bool(self._seqs) and (len(self._seqs) >= self.limit or self.due_in_s() <= 0)

    def due_in_s(self) -> float:
        """Seconds until the waiting rows must be marked (infinite when none wait)."""
        if not self._seqs:
            return float("inf")
        return self._first_at + self.delay_s - time.monotonic()

    def take(self) -> list[int]:
        seqs, self._seqs = self._seqs, []
        return seqs

    def forget(self) -> None:
        """Start again from the first unmarked row (a new producer, a new leader)."""
        self._seqs = []
        self.after = 0
