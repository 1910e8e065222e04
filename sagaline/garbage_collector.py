"""The garbage collector of a long-running process: fewer and cheaper collections.

Each message and request allocates many short-lived objects and almost no reference cycles.
With CPython's default threshold (700 allocations) the youngest generation is collected hundreds
of times a second under load, and every full collection walks all the objects the process made
at start-up (modules, the app, SQLAlchemy's metadata). A higher threshold, and `gc.freeze()` once
started (what exists then is never walked again), cut both: the SQLite demo's p99 fell from
150-197 to 114-120 ms, back to back (docs/performance.md, "The garbage collector").
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation
OLDER_THRESHOLDS = (20, 100)


def settle_after_start() -> None:
    """Call once the process has built what it keeps for its lifetime, before it serves."""
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    gc.freeze()
