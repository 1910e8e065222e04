"""Which acknowledged rows an SQLite relay marks published, and when."""

from __future__ import annotations

import pytest

from sagaline.delivery.relay import marks as relay_marks
from sagaline.delivery.relay.marks import AcknowledgedRows


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(relay_marks.time, "monotonic", lambda: now[0])
    return now


def test_rows_are_due_after_the_delay_from_the_first_one(clock: list[float]) -> None:
    rows = AcknowledgedRows(0.1, 1000, seq_is_commit_order=True)
    assert not rows.due() and rows.due_in_s() == float("inf")
    rows.add([1, 2], after=2)
    clock[0] += 0.05
    rows.add([3], after=3)
    assert not rows.due() and rows.due_in_s() == pytest.approx(0.05)
    clock[0] += 0.05
    assert rows.due()
    assert rows.take() == [1, 2, 3]
    assert not rows.due() and rows.after == 3


def test_rows_are_due_at_once_past_the_limit(clock: list[float]) -> None:
    rows = AcknowledgedRows(10, 3, seq_is_commit_order=True)
    rows.add([1, 2], after=2)
    assert not rows.due()
    rows.add([3], after=3)
    assert rows.due()


def test_reads_start_past_the_last_row_only_where_seq_is_commit_order(clock: list[float]) -> None:
    sqlite = AcknowledgedRows(0.1, 1000, seq_is_commit_order=True)
    postgresql = AcknowledgedRows(0.0, 1000, seq_is_commit_order=False)
    for rows in (sqlite, postgresql):
        rows.add([7, 9], after=9)
    assert (sqlite.after, postgresql.after) == (9, 0)
    assert postgresql.due(), "with no delay every batch is marked at once"
    sqlite.forget()
    assert sqlite.after == 0 and sqlite.take() == []
