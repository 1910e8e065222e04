"""Launchers of the real parts a local stack runs: the embedded broker, Apache Kafka, PostgreSQL;
process.py holds what they share (a child with its log, a cache lock, readiness, stopping)."""
