"""Prometheus metrics shared by every service and relay (docs/observability.md, "Metrics")."""

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram


class DeadLetterReason(StrEnum):
    """Why a message was dead-lettered: a bounded label (the free text is in the dead letter)."""

    FORGED_HEADER = "forged_header"
    TOO_LARGE = "too_large"
    INVALID_ENVELOPE = "invalid_envelope"
    KEY_MISMATCH = "key_mismatch"
    UNEXPECTED_MESSAGE = "unexpected_message"  # the handler's check: type, saga or step
    UNPROCESSABLE = "unprocessable"  # the handler refused it while handling (e.g. no such saga)
    HANDLER_FAILED = "handler_failed"  # it failed alone, with an unexpected error
    REFUSED_BY_BROKER = "refused_by_broker"  # the relay's: the broker refused the row for good


MESSAGES = Counter(
    "sagaline_messages_total",
    "Messages consumed, by topic and outcome (handled, duplicate, dead_lettered).",
    ["service", "topic", "outcome"],
)
BATCH_SECONDS = Histogram(
    "sagaline_consumer_batch_seconds",
    "Time to handle one consumed batch in one transaction.",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_LAG = Gauge(
    "sagaline_consumer_lag",
    "Records of a held partition not yet handled: its high watermark as the last fetch saw it "
    "minus the consumer's position.",
    ["service", "topic", "partition"],
)
PUBLISHED = Counter(
    "sagaline_relay_published_total", "Outbox messages published by the relay.", ["service"]
)
RELAY_BACKLOG = Gauge(
    "sagaline_relay_backlog",
    "Unpublished outbox rows, counted by the leading relay at most once a second.",
    ["service"],
)
RELAY_OLDEST_AGE = Gauge(
    "sagaline_relay_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none), measured with the backlog.",
    ["service"],
)
RESENDS = Counter(
    "sagaline_resends_total", "Messages re-sent after a timeout.", ["service", "type"]
)
SAGAS = Counter("sagaline_sagas_total", "Sagas that reached a terminal state.", ["status"])
SAGA_DURATION = Histogram(
    "sagaline_saga_duration_seconds",
    "From a saga's start to its terminal state, by outcome (its terminal status).",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
SAGAS_IN_FLIGHT = Gauge(
    "sagaline_sagas_in_flight",
    "Sagas not yet terminal, by status, counted by the orchestrator every few seconds.",
    ["status"],
)
SAGA_FAILURES = Counter(
    "sagaline_saga_failures_total",
    "Times a saga's processing raised and was rolled back alone (the others committed).",
    ["service"],
)
DEAD_LETTERS = Counter(
    "sagaline_dead_letters_total",
    "Messages dead-lettered (committed), by why: see DeadLetterReason.",
    ["service", "reason"],
)
FORGED_DEAD_LETTERS = Counter(
    "sagaline_forged_dead_letters_total",
    "Records carrying a dead-letter header on a topic no dead letter is sent to (dead-lettered).",
    ["service", "topic"],
)
RELAY_DEAD_LETTERED = Counter(
    "sagaline_relay_dead_lettered_total",
    "Outbox rows the broker refused for good, dead-lettered by the relay.",
    ["service", "topic"],
)
