"""Per-key order of the records `sagaline bench relay` reads back."""

from __future__ import annotations

from sagaline.measure.bench_relay import duplicates, order_violations

A, B = b"saga-a", b"saga-b"


def test_in_order_keys_interleaved_pass() -> None:
    records = [(A, 0), (B, 0), (A, 1), (B, 1), (A, 2)]
    assert order_violations(records) == []
    assert duplicates(records) == 0


def test_a_reordered_key_is_reported() -> None:
    violations = order_violations([(A, 0), (B, 0), (A, 2), (A, 1), (B, 1)])
    assert violations == [f"key {A!r}: 1 after 2"]


def test_a_missing_number_is_reported() -> None:
    violations = order_violations([(A, 0), (A, 2), (B, 0), (B, 1)])
    assert violations == [f"key {A!r}: missing [1]"]


def test_duplicates_are_allowed_and_counted() -> None:
    # At-least-once: a batch sent again after a lost acknowledgement repeats numbers already read.
    records = [(A, 0), (A, 1), (A, 0), (A, 1), (A, 2), (B, 0), (B, 0)]
    assert order_violations(records) == []
    assert duplicates(records) == 3
