"""Which rows the relay may mark published after a batch: per-key order, refusals moving on."""

from __future__ import annotations

from typing import NamedTuple

from sagaline.delivery.relay.settled import ACKNOWLEDGED, BrokerAnswer, Refused, settled


class Row(NamedTuple):
    seq: int
    key: bytes | None


A, B = b"a", b"b"


def test_a_row_behind_a_missing_row_of_its_key_waits_even_if_acknowledged() -> None:
    rows = [Row(1, A), Row(2, A), Row(3, A), Row(4, B)]
    answers: dict[int, BrokerAnswer] = {1: ACKNOWLEDGED, 3: ACKNOWLEDGED, 4: ACKNOWLEDGED}

    done, refused = settled(rows, answers)

    assert done == [1, 4]
    assert refused == []


def test_a_row_refused_for_good_is_settled_and_the_rows_behind_it_move_on() -> None:
    rows = [Row(1, A), Row(2, A), Row(3, A), Row(4, None), Row(5, None)]
    answers: dict[int, BrokerAnswer] = {
        1: ACKNOWLEDGED,
        2: Refused("MessageSizeTooLargeError"),
        3: ACKNOWLEDGED,
        5: ACKNOWLEDGED,
    }

    done, refused = settled(rows, answers)

    assert done == [1, 2, 3]
    assert refused == [(rows[1], "MessageSizeTooLargeError")]
