"""The inbox id of a record without one of its own: where it came from, and what it holds."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from sagaline.delivery.dead_letter import (
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_REASON,
    DLT_TOPIC,
    record_identity,
)


def record(
    topic: str = "stock",
    partition: int = 1,
    offset: int = 7,
    value: bytes = b"not json",
    headers: list[tuple[str, bytes]] | None = None,
) -> Any:
    return ConsumerRecord(
        topic, partition, offset, 0, 0, b"k", value, None, len(b"k"), len(value), headers or []
    )


def dead_letter_of(origin: Any, *, at: int, reason: str = "bad") -> Any:
    headers = [
        (DLT_REASON, reason.encode()),
        (DLT_TOPIC, origin.topic.encode()),
        (DLT_PARTITION, str(origin.partition).encode()),
        (DLT_OFFSET, str(origin.offset).encode()),
    ]
    return record("stock.dlt", 0, at, origin.value, headers)


def test_a_record_read_again_has_the_same_identity() -> None:
    assert record_identity(record()) == record_identity(record())


def test_another_record_at_a_reused_offset_is_another_record() -> None:
    """The embedded broker starts offsets again at 0 after a restart."""
    assert record_identity(record(value=b"a")) != record_identity(record(value=b"b"))


def test_records_at_other_places_differ() -> None:
    identities = {record_identity(record(offset=o, partition=p)) for o in (1, 2) for p in (0, 1)}
    assert len(identities) == 4


def test_two_dead_letters_of_one_record_are_one() -> None:
    """A poison record dead-lettered twice (read again before its offset was committed)."""
    original = record()
    first, second = dead_letter_of(original, at=3), dead_letter_of(original, at=9, reason="x")
    assert record_identity(first) == record_identity(second)
    assert record_identity(first) != record_identity(dead_letter_of(record(offset=8), at=3))
