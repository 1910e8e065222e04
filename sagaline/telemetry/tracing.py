"""OpenTelemetry tracing: one saga, one trace, across the four services and their relays.

Off unless the standard variables ask for it: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, or both,
comma-separated) or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true` wins. When off, nothing is
instrumented and every helper here is a no-op (a flag test), so tracing costs nothing.

How the trace crosses Kafka: a service writes the current span's `traceparent` into each outbox
row's headers in the transaction that writes the row; the relay publishes the row under that
context (aiokafka's instrumentation makes the publish span and injects its own `traceparent`); the
consumer continues from it with a span per message. Spans: an HTTP request (FastAPI), a
transaction and its statements (SQLAlchemy), a relay publish and a receive (aiokafka), and
`process <topic>` per consumed message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context

from sagaline.domain.envelope import Headers

TRACEPARENT = "traceparent"
_EXCLUDED_URLS = "healthz,readyz,metrics"  # probes and scrapes: not part of any saga

_enabled = False
_tracer: trace.Tracer = trace.NoOpTracer()
_OFF: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()  # reusable, does nothing


def enabled() -> bool:
    return _enabled


def exporters_from_env(env: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters the standard variables ask for; empty when tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [name for name in named if name and name != "none"]
    if "OTEL_TRACES_EXPORTER" in env:
        return named
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return ["otlp"] if any(env.get(name) for name in endpoints) else []


def configure(service_name: str) -> bool:
    """Set up the SDK for this process if the environment asks for it; True if tracing is on.
    Idempotent: the first call in a process decides."""
    global _enabled, _tracer
    if _enabled:
        return True
    exporters = exporters_from_env()
    if not exporters:
        return False
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from sagaline.telemetry.sampling import sampler_from_env

    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME, if set, wins.
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name}),
        sampler=sampler_from_env(os.environ),
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(exporter)))
    trace.set_tracer_provider(provider)
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("sagaline")
    _enabled = True
    return True


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        # OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf, the default here (the gRPC exporter is not
        # installed); the endpoint, headers and timeout come from the OTEL_EXPORTER_OTLP_* ones.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: sagaline knows otlp, console and none")


def instrument_app(app: Any, engine: Any) -> None:
    """A span per HTTP request (not probes or scrapes) and per SQL statement of `engine`."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=_EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )
    # The instrumentation declares SQLAlchemy < 2.1 and would refuse 2.1 silently; the cursor
    # events it listens to are unchanged in 2.1 (tests/integration/test_tracing.py sees them).
    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)


def with_current_trace(headers: Headers) -> Headers:
    """`headers` with `traceparent` naming the current span, sampled or not (its flags carry the
    decision on: a saga left out at its start stays out). With no span current (a timer's own
    work), the saga's synthetic one stays: trace id = saga id."""
    current = current_traceparent()
    if current is None:
        return headers
    kept = [(name, value) for name, value in headers if name != TRACEPARENT]
    return [*kept, (TRACEPARENT, current.encode())]


def _in_a_trace() -> bool:
    return trace.get_current_span().get_span_context().is_valid


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span (its flags say if it is sampled); None if tracing
    is off or no span is current."""
    if not _enabled or not _in_a_trace():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def span_in(traceparent: str | None, name: str) -> contextlib.AbstractContextManager[Any]:
    """A span `name` in the trace `traceparent` names (none if tracing is off or it is None)."""
    if not _enabled or traceparent is None:
        return _OFF
    parent = propagate.extract({TRACEPARENT: traceparent})
    return _tracer.start_as_current_span(name, context=parent)


def _extracted(headers: Sequence[tuple[str, bytes | None]] | None) -> Context:
    carrier = {
        name: bytes(value).decode("ascii", "replace")
        for name, value in headers or ()
        if value is not None and name == TRACEPARENT
    }
    return propagate.extract(carrier)


def captured() -> Context | None:
    """The current context, to be resumed in another task with `resumed`."""
    return context.get_current() if _enabled else None


def resumed(captured_context: Context | None) -> contextlib.AbstractContextManager[Any]:
    """Within: `captured_context` is the current context (nothing changes for None)."""
    return _OFF if captured_context is None else _attached(captured_context)


@contextlib.contextmanager
def _attached(attached_context: Context) -> Iterator[None]:
    token = context.attach(attached_context)
    try:
        yield
    finally:
        context.detach(token)


def continuing(headers: Headers) -> contextlib.AbstractContextManager[Headers]:
    """Within: the context `headers` carry is the current one; yields the headers without their
    `traceparent` (aiokafka's instrumentation adds the publish span's own)."""
    if not _enabled:
        return contextlib.nullcontext(headers)
    return _continuing(headers)


@contextlib.contextmanager
def _continuing(headers: Headers) -> Iterator[Headers]:
    with _attached(_extracted(headers)):
        yield [(name, value) for name, value in headers if name != TRACEPARENT]


def under(records: Sequence[Any]) -> contextlib.AbstractContextManager[None]:
    """Within: the first record's producer context is current, so a batch's transaction span
    joins the trace of the message that opened the batch (each record's `process` span is a
    child of its own producer's)."""
    if not _enabled or not records:
        return _OFF
    return _attached(_extracted(records[0].headers))


def processing(record: Any) -> contextlib.AbstractContextManager[Any]:
    """A `process <topic>` span for one consumed record, continuing the producer's trace."""
    if not _enabled:
        return _OFF
    return _tracer.start_as_current_span(
        f"process {record.topic}",
        context=_extracted(record.headers),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        },
    )


def transaction_span(dialect: str) -> contextlib.AbstractContextManager[Any]:
    """A span around one local transaction (its statements are SQLAlchemy's spans inside), when
    it is part of a trace: background work (a timer's scan, a relay's purge) makes none."""
    if not _enabled or not _in_a_trace():
        return _OFF
    return _tracer.start_as_current_span("transaction", attributes={"db.system.name": dialect})
