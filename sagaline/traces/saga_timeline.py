"""`sagaline trace SAGA_ID`: one saga's timeline from the orchestrator, drawn with rich.

The rows come from `sagaline.services.orchestrator.timeline`, the same words as the `/ui` page.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import httpx
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from sagaline.services.orchestrator.timeline import Tone, status_tone, step_results, timeline

STYLES = {
    Tone.OK: "green",
    Tone.FAILED: "bold red",
    Tone.UNDO: "yellow",
    Tone.RETRY: "magenta",
    Tone.INFO: "cyan",
}
ARROWS = {"sent": "→", "received": "←", "ended": "■"}  # ended: an outcome sent nowhere
COLUMNS: list[tuple[str, JustifyMethod]] = [
    ("+ms", "right"),
    ("step", "left"),
    ("event", "left"),
    ("attempt", "right"),
    ("kind", "left"),
    ("detail / reason", "left"),
]


class TraceError(Exception):
    """What went wrong and what to do about it; `exit_code` 1 for no such saga, 2 otherwise."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_saga_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise TraceError(
            f"{text!r} is not a saga id: it is a UUID (an order's id, or the id POST /sagas "
            "answered)",
            2,
        ) from None


def fetch_saga(
    url: str, saga_id: uuid.UUID, *, token: str | None = None, timeout_s: float = 10
) -> dict[str, Any]:
    """`GET /sagas/{id}` of the orchestrator at `url`, or a TraceError that says what to fix."""
    address = f"{url.rstrip('/')}/sagas/{saga_id}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(address, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise TraceError(
            f"cannot reach the orchestrator at {url} ({type(exc).__name__}): start the stack "
            "(`sagaline up`) or pass --url with the orchestrator's address",
            2,
        ) from None
    if response.status_code == 404:
        raise TraceError(
            f"the orchestrator at {url} has no saga {saga_id}: check the id (an order's saga has "
            "the order's id, a saga started by POST /sagas the id it answered; `GET /sagas` "
            "lists them), or --url if it is another stack's",
            1,
        )
    if response.status_code == 401:
        raise TraceError(f"the orchestrator at {url} refused the token: pass --api-token", 2)
    if response.status_code != 200:
        raise TraceError(
            f"the orchestrator at {url} answered HTTP {response.status_code}: is --url the "
            "orchestrator (port 8080 by default)?",
            2,
        )
    try:
        saga: dict[str, Any] = response.json()
    except ValueError:
        raise TraceError(f"{url} did not answer JSON: is --url the orchestrator?", 2) from None
    return saga


def render(saga: Mapping[str, Any], console: Console) -> None:
    """The saga's status, its failure reason and its timeline, coloured by outcome."""
    status = str(saga.get("status", "?"))
    style = STYLES[status_tone(status)]
    title = Text.assemble(("saga ", "bold"), (str(saga.get("id", "?")), "bold"), "  ")
    title.append(status, style=style)
    title.append(f"  {saga.get('name', '')}, {saga.get('execution', '')}", style="dim")
    console.print(title)
    if saga.get("reason"):
        console.print(Text.assemble(("reason: ", "bold"), (str(saga["reason"]), style)))
    table = Table(show_edge=False, header_style="bold")
    for column, justify in COLUMNS:
        table.add_column(column, justify=justify)
    for row in timeline(saga):
        row_style = STYLES[row.tone]
        table.add_row(
            str(row.offset_ms),
            Text(row.step),
            Text(f"{ARROWS.get(row.direction, row.direction)} {row.event}"),
            str(row.attempt),
            Text(str(row.kind), style=row_style),
            Text(row.detail, style=row_style if row.detail else ""),
        )
    if table.row_count:
        console.print(table)
    else:
        console.print(Text("no history recorded yet", style="dim"))
    results = [kept for kept in step_results(saga) if kept.result]
    if results:
        console.print(Text("results", style="bold"))
        for kept in results:  # as text: a result's brackets are not markup
            console.print(Text.assemble("  ", (kept.step, "bold"), "  ", kept.result))
