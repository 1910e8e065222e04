"""The saga timeline page at `/ui`: recent sagas with filters, and one saga's timeline.

Server-rendered HTML: every value that comes from the database goes through `html.escape`, and
the Content-Security-Policy allows no inline script, so a saga's text cannot run as code. The
page refreshes itself every 2 s (ui_static/ui.js). It only reads: the token guard that every
router carries lets GET through, so the page needs no token, like every read of the JSON API.
Links are relative, so the page also works behind a path prefix (a proxy, an Ingress).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from sagaline.domain.clock import as_utc, utcnow
from sagaline.domain.engine import SagaStatus
from sagaline.http.api import count_by
from sagaline.service import Runtime, runtime_of
from sagaline.services.orchestrator.models import Saga
from sagaline.services.orchestrator.saga_queries import (
    FilterDep,
    SagaDetailOut,
    SagaFilter,
    SagaOut,
    find_sagas,
    saga_detail,
)
from sagaline.services.orchestrator.timeline import (
    TimelineRow,
    status_tone,
    step_results,
    timeline,
)

router = APIRouter(tags=["ui"], include_in_schema=False)
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]

LIST_LIMIT = 200
_STATIC = resources.files(__package__ or "sagaline.services.orchestrator") / "ui_static"
ASSETS = {
    "ui.css": ((_STATIC / "ui.css").read_text(encoding="utf-8"), "text/css"),
    "ui.js": ((_STATIC / "ui.js").read_text(encoding="utf-8"), "text/javascript"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
        # the time axis places each dot with a style attribute (a number the server computed)
        "style-src-attr 'unsafe-inline'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def e(value: object) -> str:
    """Escaped text for HTML content and quoted attributes; None is empty."""
    return "" if value is None else escape(str(value), quote=True)


@router.get("/ui/static/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    text, media_type = ASSETS[name]
    return Response(text, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})


@router.get("/ui", response_class=HTMLResponse)
async def saga_list(runtime: RuntimeDep, where: FilterDep) -> HTMLResponse:
    recent_first = SagaFilter(
        where.status, where.older_than_s, where.newer_than_s, where.reason, newest_first=True
    )
    async with runtime.db.reads() as session:
        sagas = await find_sagas(session, recent_first, limit=LIST_LIMIT)
        counts = await count_by(session, Saga.status)
    body = _filters_form(where) + _live(
        _counts(counts) + _saga_table([SagaOut.of(saga) for saga in sagas])
    )
    return _page("sagas", "", "Sagas", body)


@router.get("/ui/sagas/{saga_id}", response_class=HTMLResponse)
async def saga_page(saga_id: uuid.UUID, runtime: RuntimeDep) -> HTMLResponse:
    async with runtime.db.reads() as session:
        detail = await saga_detail(session, saga_id)
    root = "../../"
    if detail is None:
        body = f'<p class="reason">No saga {e(saga_id)}.</p>'
        return _page(f"saga {saga_id}", root, f"Saga {saga_id}", body, status_code=404)
    body = _live(_saga_view(detail)) + _operator_form(saga_id)
    return _page(f"saga {saga_id}", root, f"Saga {saga_id}", body)


# -- rendering ------------------------------------------------------------------------------------


def _page(
    title: str, root: str, heading: str, body: str, *, status_code: int = 200
) -> HTMLResponse:
    """A whole page; `root` leads from the page's URL back to the one `/ui` lives under."""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · sagaline</title>
<link rel="stylesheet" href="{root}ui/static/ui.css">
<script src="{root}ui/static/ui.js" defer></script>
</head><body>
<p class="muted"><a href="{root}ui">all sagas</a> · <span id="refreshed">live, every 2 s</span></p>
<h1>{e(heading)}</h1>
{body}
</body></html>"""
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _live(inner: str) -> str:
    """The part of a page that ui.js replaces on each refresh."""
    return f'<div id="live">{inner}</div>'


def _filters_form(where: SagaFilter) -> str:
    options = "".join(
        f'<option value="{e(status)}"{" selected" if where.status == status else ""}>'
        f"{e(status)}</option>"
        for status in SagaStatus
    )
    return f"""<form class="filters" method="get" action="ui">
<label>status<select name="status"><option value="">any</option>{options}</select></label>
<label>newer than (s)<input type="number" min="0" step="any" name="newer_than_s"
 value="{e(where.newer_than_s)}"></label>
<label>older than (s)<input type="number" min="0" step="any" name="older_than_s"
 value="{e(where.older_than_s)}"></label>
<label>failure reason contains<input type="search" name="reason" value="{e(where.reason)}"></label>
<button type="submit">filter</button> <a href="ui">clear</a>
</form>"""


def _counts(counts: Mapping[str, int]) -> str:
    parts = "".join(
        f'<span class="tone-{status_tone(status)}"><span class="badge">{e(status)}</span> '
        f'<span data-count="{e(status)}">{counts.get(status, 0)}</span></span>'
        for status in SagaStatus
    )
    return f'<p class="counts">{parts}</p>'


def _saga_table(sagas: Iterable[SagaOut]) -> str:
    now = utcnow()
    rows = "".join(
        f'<tr class="tone-{status_tone(saga.status)}" data-saga="{e(saga.id)}">'
        f'<td class="mono"><a href="ui/sagas/{e(saga.id)}">{e(saga.id)}</a></td>'
        f'<td><span class="badge" data-status="{e(saga.status)}">{e(saga.status)}</span></td>'
        f"<td>{e(saga.reason)}</td>"
        f'<td class="num" title="{e(saga.created_at.isoformat())}">'
        f"{e(_age(now, saga.created_at))}</td>"
        f'<td class="num">{e(_duration(saga.created_at, saga.finished_at))}</td></tr>'
        for saga in sagas
    )
    if not rows:
        return '<p class="muted" id="no-sagas">No saga matches.</p>'
    head = "<tr><th>saga</th><th>status</th><th>reason</th><th>age</th><th>took</th></tr>"
    return f'<table id="sagas"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _saga_view(saga: SagaDetailOut) -> str:
    tone = status_tone(saga.status)
    why = ""
    if saga.reason:
        why = f'<div class="reason tone-{tone}" id="reason">{e(saga.reason)}</div>'
    facts = (
        f'<p><span class="badge tone-{tone}" id="status">{e(saga.status)}</span> '
        f"<span class=muted>{e(saga.name)}, {e(saga.execution)}; started "
        f"{e(saga.created_at.isoformat())}, took "
        f"{e(_duration(saga.created_at, saga.finished_at) or 'running')}</span></p>"
    )
    document = saga.model_dump(mode="json")
    rows = timeline(document)
    results = {row.step: row.result for row in step_results(document)}
    return (
        facts
        + why
        + "<h2>Steps</h2>"
        + _steps_table(saga.steps, results)
        + "<h2>Timeline</h2>"
        + _timeline_table(rows)
        + "<h2>Payload</h2>"
        + f"<pre>{e(json.dumps(saga.payload, indent=2, sort_keys=True))}</pre>"
    )


def _operator_form(saga_id: uuid.UUID) -> str:
    """An operator's hands (docs/operations.md, "Retry or cancel a saga"): ui.js POSTs to the
    JSON API with the token typed here. Outside #live: a refresh never clears what is typed."""
    return f"""<h2>Operator</h2>
<form class="operator" id="operator" data-saga="{e(saga_id)}">
<label>API token<input type="password" name="token" autocomplete="off"></label>
<label>who asks<input type="text" name="actor" maxlength="100"></label>
<button type="button" data-action="retry">retry</button>
<button type="button" data-action="cancel">cancel</button>
<span id="operator-answer" role="status"></span>
<p class="muted">retry: a STUCK saga is re-driven, a FAILED one's compensations are sent again;
cancel: a RUNNING saga is compensated. Each is written into the timeline with who asked.</p>
</form>"""


def _steps_table(steps: Mapping[str, Any], results: Mapping[str, str]) -> str:
    """Each step's state and its result (the payload of its done reply, passed on to the steps
    after it and to its compensation)."""
    rows = "".join(
        f'<tr data-step="{e(name)}"><td>{e(name)}</td><td>{e(state.get("status"))}</td>'
        f'<td class="num">{e(state.get("attempt"))}</td><td>{e(state.get("reason"))}</td>'
        f'<td class="result"><code>{e(results.get(name))}</code></td></tr>'
        for name, state in steps.items()
        if isinstance(state, Mapping)
    )
    head = "<tr><th>step</th><th>status</th><th>attempts</th><th>reason</th><th>result</th></tr>"
    return f'<table id="steps"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _timeline_table(rows: list[TimelineRow]) -> str:
    span = max((row.offset_ms for row in rows), default=0) or 1
    body = "".join(
        f'<tr class="tone-{row.tone}" data-kind="{e(row.kind)}" data-step="{e(row.step)}">'
        f'<td class="num">+{row.offset_ms} ms</td>'
        f'<td class="axis"><span class="dot" style="left:{100 * row.offset_ms / span:.1f}%">'
        f"</span></td>"
        f"<td>{e(row.step)}</td><td>{e(row.direction)}</td><td><code>{e(row.event)}</code></td>"
        f'<td class="num">{row.attempt}</td><td><span class="badge">{e(row.kind)}</span></td>'
        f"<td>{e(row.detail)}</td></tr>"
        for row in rows
    )
    head = (
        "<tr><th>offset</th><th>time axis</th><th>step</th><th>direction</th><th>event</th>"
        "<th>attempt</th><th>kind</th><th>detail</th></tr>"
    )
    return f'<table id="timeline"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _age(now: datetime, then: datetime) -> str:
    return _seconds((now - as_utc(then)).total_seconds()) + " ago"


def _duration(start: datetime, end: datetime | None) -> str:
    return "" if end is None else _seconds((as_utc(end) - as_utc(start)).total_seconds())


def _seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
