"""The broker's answer to each row of a relay batch, and which rows it settles (pure).

A row is acknowledged, refused for good (sending it again would be refused again: it goes to a
dead-letter topic), or missing (not acknowledged: sent again). `settled` keeps one key's rows in
order: none is marked published before every earlier row of its key was answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)

ACKNOWLEDGED = None


@dataclass(frozen=True)
class Refused:
    """The broker refused a row for good (sending it again would be refused again)."""

    reason: str


BrokerAnswer = Refused | None  # to one row: refused for good, or ACKNOWLEDGED

# Errors about the record itself, not the broker's state: the same record is refused again.
_REFUSALS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)


class KeyedRow(Protocol):
    """What `settled` reads of an outbox row."""

    @property
    def seq(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...


Row = TypeVar("Row", bound=KeyedRow)


def refused_for_good(exc: Exception) -> bool:
    return isinstance(exc, _REFUSALS)


def describe_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def settled(
    rows: Sequence[Row], answers: dict[int, BrokerAnswer]
) -> tuple[list[int], list[tuple[Row, str]]]:
    """The rows that may be marked published, in seq order, and those among them to dead-letter.

    A row is settled when it and every earlier row of its key were acknowledged or refused for
    good: a row behind one of its key still missing waits, whatever its own answer, so that it
    is never marked (and, if sent again, never sent) before the one it follows.
    """
    done: list[int] = []
    refused: list[tuple[Row, str]] = []
    waiting: set[bytes | None] = set()
    for row in rows:
        if row.key in waiting:
            continue
        if row.seq not in answers:
            waiting.add(row.key)
            continue
        answer = answers[row.seq]
        done.append(row.seq)
        if isinstance(answer, Refused):
            refused.append((row, answer.reason))
    return done, refused
