"""The tracing helpers: when tracing is on, the outbox carries the writer's span, the relay
publishes under it, a consumer continues it, and a group commit keeps each caller's context;
when off, nothing changes. The SDK's in-memory exporter records the spans (the whole path
across processes is tests/integration/test_tracing.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sagaline.delivery.group_commit import GroupCommitter
from sagaline.domain.envelope import header_value
from sagaline.storage.db import Database
from sagaline.telemetry import tracing
from sagaline.telemetry.sampling import saga_sampler, sampler_from_env

SYNTHETIC = [
    ("type", b"payment.charge"),
    ("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
]


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, in this process only, with the sagas' sampler and an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=saga_sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def ids_of(span: trace.Span) -> str:
    """A `traceparent`'s trace and parent ids, as `span` would be named in one (the flags vary)."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}"


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask(
    env: dict[str, str], exporters: list[str]
) -> None:
    assert tracing.exporters_from_env(env) == exporters


def test_off_the_headers_are_untouched_and_nothing_is_recorded() -> None:
    assert not tracing.enabled()
    assert tracing.with_current_trace(SYNTHETIC) is SYNTHETIC
    with tracing.continuing(SYNTHETIC) as sent:
        assert sent is SYNTHETIC
    assert tracing.captured() is None


def test_the_outbox_row_carries_the_writers_span(exported: InMemorySpanExporter) -> None:
    with tracing._tracer.start_as_current_span("request", kind=SpanKind.SERVER) as span:
        headers = tracing.with_current_trace(SYNTHETIC)
    assert header_value(headers, "type") == "payment.charge"
    assert (header_value(headers, "traceparent") or "").rsplit("-", 1)[0] == ids_of(span)
    assert [name for name, _ in headers].count("traceparent") == 1


def test_without_a_span_the_sagas_own_traceparent_stays(exported: InMemorySpanExporter) -> None:
    assert tracing.with_current_trace(SYNTHETIC) == SYNTHETIC
    with tracing.transaction_span("sqlite"):  # background work: no span of its own either
        assert tracing.with_current_trace(SYNTHETIC) == SYNTHETIC
    assert exported.get_finished_spans() == ()


def test_a_saga_left_out_by_the_sampler_stays_out_downstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=saga_sampler(0.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    with tracing._tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as request:
        headers = tracing.with_current_trace(SYNTHETIC)
    written = header_value(headers, "traceparent") or ""
    assert written.split("-")[1] == f"{request.get_span_context().trace_id:032x}"
    assert int(written.split("-")[3], 16) & 1 == 0  # not sampled: the consumer will not be either
    record = SimpleNamespace(topic="payment", partition=0, offset=7, headers=headers)
    with tracing.processing(record):
        assert not trace.get_current_span().is_recording()
    assert exporter.get_finished_spans() == ()


def test_the_relay_publishes_under_the_stored_context_and_a_consumer_continues_it(
    exported: InMemorySpanExporter,
) -> None:
    with tracing._tracer.start_as_current_span("request", kind=SpanKind.SERVER) as writer:
        stored = tracing.with_current_trace(SYNTHETIC)
    with tracing.continuing(stored) as sent:
        assert header_value(sent, "traceparent") is None  # the publish span's own goes instead
        parent = trace.get_current_span().get_span_context()
    assert (parent.trace_id, parent.span_id) == (
        writer.get_span_context().trace_id,
        writer.get_span_context().span_id,
    )
    record = SimpleNamespace(topic="payment", partition=0, offset=7, headers=stored)
    with tracing.processing(record):
        pass
    processed = next(s for s in exported.get_finished_spans() if s.name == "process payment")
    assert processed.parent is not None
    assert processed.parent.span_id == writer.get_span_context().span_id
    assert processed.context.trace_id == writer.get_span_context().trace_id
    assert processed.kind is SpanKind.CONSUMER


def test_root_spans_only_where_work_enters(exported: InMemorySpanExporter) -> None:
    tracer = tracing._tracer
    for kind in SpanKind:
        with tracer.start_as_current_span(f"root {kind.name}", kind=kind):
            pass
    with (
        tracer.start_as_current_span("request", kind=SpanKind.SERVER),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT),
    ):
        pass
    names = sorted(span.name for span in exported.get_finished_spans())
    assert names == ["SELECT", "request", "root PRODUCER", "root SERVER"]


def test_a_group_commit_runs_each_unit_in_its_callers_context(
    exported: InMemorySpanExporter, tmp_path: Path
) -> None:
    async def scenario() -> None:
        db = Database(f"sqlite:///{tmp_path / 'group.db'}")
        committer = GroupCommitter(db)
        seen: dict[str, int] = {}

        async def place(name: str) -> int:
            with tracing._tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:

                async def unit(_session: object) -> None:
                    seen[name] = trace.get_current_span().get_span_context().span_id

                await committer.run(unit)
                return span.get_span_context().span_id

        names = [f"request {uuid.uuid4().hex[:6]}" for _ in range(3)]
        callers = await asyncio.gather(*(place(name) for name in names))
        await db.dispose()
        assert [seen[name] for name in names] == callers

    asyncio.run(scenario())


def test_the_timer_continues_the_trace_the_saga_began_in(exported: InMemorySpanExporter) -> None:
    with tracing._tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER):
        started_in = tracing.current_traceparent()
    assert started_in is not None
    with tracing.span_in(started_in, "saga timeout"):  # in the timer's task, no span current
        resent = tracing.with_current_trace(SYNTHETIC)
    timeout = next(s for s in exported.get_finished_spans() if s.name == "saga timeout")
    assert timeout.parent is not None
    assert f"{timeout.parent.span_id:016x}" == started_in.split("-")[2]
    assert (header_value(resent, "traceparent") or "").split("-")[2] == (
        f"{timeout.context.span_id:016x}"
    )
    with tracing.span_in(None, "saga timeout"):  # a saga begun with tracing off
        assert tracing.with_current_trace(SYNTHETIC) == SYNTHETIC


@pytest.mark.parametrize(
    ("env", "description"),
    [
        ({}, "EntryPoints{1.0}"),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, "EntryPoints{1.0}"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
            "EntryPoints{0.1}",
        ),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, None),  # the SDK's own, read by the SDK
    ],
)
def test_the_sampler_follows_the_standard_variables(
    env: dict[str, str], description: str | None
) -> None:
    sampler = sampler_from_env(env)
    if description is None:
        assert sampler is None
    else:
        assert sampler is not None and description in sampler.get_description()


@pytest.mark.parametrize("argument", ["1.5", "-0.1", "a tenth"])
def test_a_ratio_outside_zero_to_one_is_refused_with_what_to_set(argument: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": argument}
    with pytest.raises(ValueError, match="a ratio from 0 to 1"):
        sampler_from_env(env)


def test_at_a_ratio_only_that_share_of_sagas_is_traced() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=saga_sampler(0.25))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for _ in range(2000):
        with (
            tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER),
            tracer.start_as_current_span("transaction"),
        ):
            pass
    spans = exporter.get_finished_spans()
    requests = [span for span in spans if span.name == "POST /orders"]
    assert 400 <= len(requests) <= 600  # 500 expected; binomial sd ≈ 19
    assert len(spans) == 2 * len(requests)  # a sampled saga is whole
    provider.shutdown()
