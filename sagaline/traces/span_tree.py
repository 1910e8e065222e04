"""Traces as trees: which spans hang under which, and a rich rendering of one trace."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePath

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from sagaline.traces.otlp_receiver import ReceivedSpan


def by_trace(spans: Iterable[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    return dict(traces)


def roots(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """Spans with no parent among `spans`: one, for a trace whose every span arrived."""
    ids = {span.span_id for span in spans}
    return [span for span in spans if span.parent_id not in ids]


def children(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    below: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in sorted(spans, key=lambda span: span.start_ns):
        if span.parent_id is not None:
            below[span.parent_id].append(span)
    return below


def short_name(span: ReceivedSpan) -> str:
    """A statement span names its SQLite database by its path: the file's name is enough."""
    if span.kind != "client":
        return span.name
    return " ".join(PurePath(word).name if "/" in word else word for word in span.name.split(" "))


def render(spans: list[ReceivedSpan]) -> Tree:
    """One trace: each span as `service  name  duration`, children in start order, and the
    offset of each span from the trace's start."""
    start = min(span.start_ns for span in spans)
    below = children(spans)
    tree = Tree(f"[bold]trace {spans[0].trace_id}[/bold]  {len(spans)} spans")

    def label(span: ReceivedSpan) -> str:
        offset_ms = (span.start_ns - start) / 1e6
        return (
            f"[cyan]{span.service}[/cyan]  {escape(short_name(span))}  "
            f"[dim]+{offset_ms:.1f} ms[/dim]  {span.duration_ms:.1f} ms"
        )

    def add(node: Tree, span: ReceivedSpan) -> None:
        branch = node.add(label(span))
        for child in below.get(span.span_id, []):
            add(branch, child)

    for root in sorted(roots(spans), key=lambda span: span.start_ns):
        add(tree, root)
    return tree


class TracePrinter:
    """Collects spans as they arrive and prints each trace once it has been quiet a while."""

    def __init__(self, console: Console, quiet_s: float = 2.0) -> None:
        self.console = console
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._pending: dict[str, list[ReceivedSpan]] = defaultdict(list)
        self._last_seen: dict[str, float] = {}

    def add(self, spans: list[ReceivedSpan]) -> None:
        now = time.monotonic()
        with self._lock:
            for span in spans:
                self._pending[span.trace_id].append(span)
                self._last_seen[span.trace_id] = now

    def print_quiet(self) -> None:
        now = time.monotonic()
        with self._lock:
            quiet = [t for t, seen in self._last_seen.items() if now - seen >= self.quiet_s]
            done = [self._pending.pop(trace_id) for trace_id in quiet]
            for trace_id in quiet:
                del self._last_seen[trace_id]
        for spans in done:
            self.console.print(render(spans))
