"""Which spans start a trace: only where a saga's work enters a process.

A service's background work (a timer scan, a relay's poll, the SQL of a periodic job, aiokafka's
poll of a batch) would otherwise make a new trace every few hundred milliseconds, burying the
sagas' traces. A span with a parent follows its parent's decision, as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

ENTRY_KINDS = frozenset({SpanKind.SERVER, SpanKind.PRODUCER})


class EntryPoints(Sampler):
    """Samples a root span only if it is an HTTP request served or a message published."""

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
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return "EntryPoints"


def saga_sampler() -> Sampler:
    return ParentBased(root=EntryPoints())
