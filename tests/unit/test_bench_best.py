"""Which run `sagaline bench` names as its throughput within the latency bound."""

from __future__ import annotations

from typing import Any

from sagaline.measure.bench import best_within


def run(concurrency: int, sagas_per_s: float, p99_ms: float, pending: int = 0) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "sagas_per_s": sagas_per_s,
        "p99_ms": p99_ms,
        "pending": pending,
    }


def test_the_fastest_run_under_the_bound_wins() -> None:
    rows = [run(16, 120.0, 200.0), run(64, 250.0, 480.0), run(256, 400.0, 1_200.0)]
    assert best_within(rows, 500.0) == {
        "p99_bound_ms": 500.0,
        "concurrency": 64,
        "sagas_per_s": 250.0,
        "p99_ms": 480.0,
    }


def test_a_run_that_left_sagas_pending_does_not_count() -> None:
    rows = [run(16, 120.0, 200.0), run(64, 250.0, 480.0, pending=3)]
    best = best_within(rows, 500.0)
    assert best is not None and best["concurrency"] == 16


def test_the_bound_is_strict_and_may_fit_no_run() -> None:
    assert best_within([run(16, 120.0, 500.0)], 500.0) is None
    assert best_within([], 500.0) is None
