"""Launchers of the real parts a local stack runs: the embedded broker, Apache Kafka, PostgreSQL."""
