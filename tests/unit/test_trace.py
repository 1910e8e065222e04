"""`sagaline trace`: the timeline drawn from a saga's JSON, and what it says when it cannot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.lab.ports import free_port
from sagaline.services.orchestrator.timeline import Kind, Tone, timeline
from sagaline.traces.saga_timeline import render

SAGA_ID = "5b0c6f55-8a55-4c38-9d8e-0f1a2b3c4d5e"


def event(at: str, direction: str, type_: str, step: str | None, attempt: int = 1, detail=None):
    return {
        "at": f"2026-11-30T10:00:{at}",
        "direction": direction,
        "type": type_,
        "step": step,
        "attempt": attempt,
        "message_id": None,
        "detail": detail,
    }


# A saga that charged, found no stock after a re-send, refunded and was compensated.
COMPENSATED = {
    "id": SAGA_ID,
    "name": "order",
    "status": "COMPENSATED",
    "execution": "sequential",
    "reason": "stock: out of stock for p-1 [bold]",
    "steps": {},
    "payload": {},
    "created_at": "2026-11-30T10:00:00",
    "updated_at": "2026-11-30T10:00:03",
    "finished_at": "2026-11-30T10:00:03",
    "history": [
        event("00.000", "received", "saga.start", None),
        event("00.010", "sent", "payment.charge", "payment"),
        event("00.120", "received", "payment.charged", "payment"),
        event("00.130", "sent", "stock.reserve", "stock"),
        event("01.130", "sent", "stock.reserve", "stock", attempt=2),
        event("01.200", "received", "dead-letter", "stock", detail="unprocessable by stock: x"),
        event("01.250", "received", "stock.failed", "stock", 2, "out of stock for p-1 [bold]"),
        event("01.260", "sent", "payment.compensate", "payment"),
        event("01.400", "received", "payment.compensated", "payment", detail="REFUNDED"),
        event("01.410", "sent", "saga.compensated", None, detail="stock: out of stock"),
    ],
}


def test_timeline_classifies_each_event_with_its_offset() -> None:
    rows = timeline(COMPENSATED)

    assert [(row.offset_ms, row.kind) for row in rows] == [
        (0, Kind.START),
        (10, Kind.COMMAND),
        (120, Kind.SUCCESS),
        (130, Kind.COMMAND),
        (1130, Kind.RESEND),
        (1200, Kind.DEAD_LETTER),
        (1250, Kind.FAILURE),
        (1260, Kind.COMPENSATION),
        (1400, Kind.COMPENSATED),
        (1410, Kind.OUTCOME),
    ]
    assert [row.tone for row in rows if row.kind == Kind.OUTCOME] == [Tone.UNDO]
    assert rows[0].step == "saga"


def test_render_prints_every_row_and_the_reason_as_text() -> None:
    console = Console(record=True, width=200, color_system="truecolor")

    render(COMPENSATED, console)

    text = console.export_text(clear=False)
    assert f"saga {SAGA_ID}  COMPENSATED" in text
    # The reason is printed as text: markup in it is not interpreted.
    assert "reason: stock: out of stock for p-1 [bold]" in text
    lines = text.splitlines()
    resend = next(line for line in lines if "stock.reserve" in line and " 2 " in line)
    assert "1130" in resend and "re-send" in resend
    failure = next(line for line in lines if "stock.failed" in line)
    assert "1250" in failure and "failure" in failure and "out of stock for p-1 [bold]" in failure
    assert any("dead letter" in line and "unprocessable by stock" in line for line in lines)
    assert any("payment.compensated" in line and "REFUNDED" in line for line in lines)
    # Coloured by outcome: success green, failure red, compensation yellow, re-send magenta.
    styled = console.export_text(styles=True)
    for ansi, kind in [("32", "success"), ("1;31", "failure"), ("33", "compensation")]:
        assert f"\x1b[{ansi}m{kind}" in styled, kind
    assert "\x1b[35mre-send" in styled


def test_render_of_a_saga_without_history() -> None:
    console = Console(record=True, width=120)

    render({**COMPENSATED, "history": [], "status": "RUNNING", "reason": None}, console)

    text = console.export_text()
    assert "RUNNING" in text and "no history recorded yet" in text and "reason" not in text


@pytest.fixture
def not_found_server() -> Iterator[str]:
    """An HTTP server that answers every GET with 404, as the orchestrator does an unknown id."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "no saga"}')

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_saga_exits_1_saying_what_to_check(not_found_server: str) -> None:
    result = CliRunner().invoke(app, ["trace", SAGA_ID, "--url", not_found_server])

    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"the orchestrator at {not_found_server} has no saga {SAGA_ID}" in said
    assert "check the id" in said


def test_unreachable_orchestrator_exits_2_saying_what_to_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    result = CliRunner().invoke(app, ["trace", SAGA_ID, "--url", url])

    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"cannot reach the orchestrator at {url}" in said
    assert "sagaline up" in said and "--url" in said


def test_a_saga_id_that_is_not_a_uuid_exits_2() -> None:
    result = CliRunner().invoke(app, ["trace", "order-17", "--url", "http://127.0.0.1:1"])

    assert result.exit_code == 2, result.output
    assert "'order-17' is not a saga id" in result.output
