"""Which spans start a trace: only where a saga's work enters a process.

A service's background work (a timer scan, a relay's poll, the SQL of a periodic job, aiokafka's
poll of a batch) would otherwise make a new trace every few hundred milliseconds, burying the
sagas' traces. A span with a parent follows its parent's decision, as usual, so a sampled saga is
whole in every process and an unsampled one costs little anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

ENTRY_KINDS = frozenset({SpanKind.SERVER, SpanKind.PRODUCER})


class EntryPoints(Sampler):
    """Samples a root span only if it is an HTTP request served or a message published, and
    then only `ratio` of them (by trace id, as the SDK's TraceIdRatioBased does)."""

    def __init__(self, ratio: float = 1.0) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind in ENTRY_KINDS:
            return self._ratio.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return f"EntryPoints{{{self._ratio.rate}}}"


RATIO_SAMPLERS = ("parentbased_traceidratio", "traceidratio")


def saga_sampler(ratio: float = 1.0) -> Sampler:
    return ParentBased(root=EntryPoints(ratio))


def sampler_from_env(env: Mapping[str, str]) -> Sampler | None:
    """The sagas' sampler, at the ratio `OTEL_TRACES_SAMPLER=parentbased_traceidratio` and
    `OTEL_TRACES_SAMPLER_ARG` ask for; None (the SDK reads the variables itself) for any other
    sampler named there. Refuses (ValueError) a ratio outside 0..1."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return saga_sampler()
    if name not in RATIO_SAMPLERS:
        return None
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "1").strip() or "1"
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={argument!r}: a ratio from 0 to 1, e.g. 0.1")
    return saga_sampler(ratio)
