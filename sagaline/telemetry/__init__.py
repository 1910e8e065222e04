"""Telemetry: Prometheus metrics and OpenTelemetry tracing."""
