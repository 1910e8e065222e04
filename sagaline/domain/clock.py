"""Timestamps: aware UTC datetimes (SQLModel stores them as UTC on SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def seconds_from_now(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def from_epoch(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime: SQLite gives naive ones back, and they are UTC, like every time
    the services write."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def seconds_since(start: datetime | None, now: datetime) -> float:
    """Seconds from a stored `start` to `now` (0 for none, never negative)."""
    return 0.0 if start is None else max(0.0, (now - as_utc(start)).total_seconds())
