"""Prometheus metrics shared by every service and relay."""

from prometheus_client import Counter, Gauge, Histogram

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
PUBLISHED = Counter(
    "sagaline_relay_published_total", "Outbox messages published by the relay.", ["service"]
)
RELAY_LAG = Gauge(
    "sagaline_relay_backlog", "Unpublished outbox rows seen by the relay's last read.", ["service"]
)
RESENDS = Counter(
    "sagaline_resends_total", "Messages re-sent after a timeout.", ["service", "type"]
)
SAGAS = Counter("sagaline_sagas_total", "Sagas that reached a terminal state.", ["status"])
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
