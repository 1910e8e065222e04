"""The OTLP receiver behind `sagaline up --trace` and the tracing test: it takes what the SDK's
own OTLP/HTTP exporter sends, over real HTTP, and the spans come back as one tree."""

from __future__ import annotations

import io

import httpx
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from rich.console import Console

from sagaline.traces.otlp_receiver import ReceivedSpan, SpanReceiver
from sagaline.traces.span_tree import TracePrinter, by_trace, render, roots, short_name


def export_a_trace(endpoint: str, compression: Compression) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "order"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, compression=compression)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as root:
        with tracer.start_as_current_span("transaction", attributes={"db.system.name": "sqlite"}):
            pass
        with tracer.start_as_current_span("orchestrator send", kind=SpanKind.PRODUCER):
            pass
    provider.shutdown()
    return f"{root.get_span_context().trace_id:032x}"


def test_spans_exported_by_the_sdk_are_received_as_one_tree() -> None:
    for compression in (Compression.NoCompression, Compression.Gzip):
        with SpanReceiver() as receiver:
            trace_id = export_a_trace(receiver.endpoint, compression)
            spans = by_trace(receiver.spans())[trace_id]
        assert len(spans) == 3
        (root,) = roots(spans)
        assert (root.name, root.kind, root.service) == ("POST /orders", "server", "order")
        assert {s.parent_id for s in spans if s is not root} == {root.span_id}
        transaction = next(s for s in spans if s.name == "transaction")
        assert transaction.attributes == {"db.system.name": "sqlite"}
        assert transaction.duration_ms >= 0


def test_the_tree_is_printed_once_the_trace_is_quiet() -> None:
    output = io.StringIO()
    printer = TracePrinter(Console(file=output, width=120), quiet_s=0)
    with SpanReceiver(on_spans=printer.add) as receiver:
        trace_id = export_a_trace(receiver.endpoint, Compression.NoCompression)
    printer.print_quiet()
    text = output.getvalue()
    assert f"trace {trace_id}" in text and "3 spans" in text
    lines = text.splitlines()
    request = next(i for i, line in enumerate(lines) if "POST /orders" in line)
    assert "order  transaction" in lines[request + 1]  # indented under its parent
    printer.print_quiet()
    assert output.getvalue() == text  # printed once
    assert render(receiver.spans()).label is not None


def test_what_is_not_an_otlp_export_is_refused() -> None:
    with SpanReceiver() as receiver:
        not_gzip = {"Content-Encoding": "gzip", "Content-Type": "application/x-protobuf"}
        refused = httpx.post(receiver.endpoint, content=b"plain bytes", headers=not_gzip)
        wrong_path = httpx.post(receiver.endpoint.replace("/v1/traces", "/v1/logs"), content=b"")
        assert receiver.spans() == []
    assert refused.status_code == 400
    assert wrong_path.status_code == 404


def test_a_statement_names_its_sqlite_database_by_file_name() -> None:
    def span(name: str, kind: str) -> ReceivedSpan:
        return ReceivedSpan("t" * 32, "s" * 16, None, name, "payment", kind, 0, 1)

    assert short_name(span("SELECT /tmp/state/paymentdb.db", "client")) == "SELECT paymentdb.db"
    assert short_name(span("GET /orders/{order_id}", "server")) == "GET /orders/{order_id}"
