"""A saga's history as a timeline: each event classified, with its offset from the start.

Pure and fed the JSON of `GET /sagas/{id}`, so that the `/ui` page and `sagaline trace` tell
the same story with the same words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sagaline.domain.messages import SAGA_COMPENSATED, SAGA_COMPLETED, SAGA_FAILED, SAGA_START

DEAD_LETTER = "dead-letter"  # the type the orchestrator records for a step's unreadable command


class Kind(StrEnum):
    """What an event was, in an operator's words."""

    START = "start"
    COMMAND = "command"
    RESEND = "re-send"
    SUCCESS = "success"
    FAILURE = "failure"
    DEAD_LETTER = "dead letter"
    COMPENSATION = "compensation"
    COMPENSATED = "compensated"
    OUTCOME = "outcome"
    STUCK = "processing failed"  # the orchestrator's own work for the saga raised
    REDRIVE = "re-drive"  # a retry of a saga whose processing had failed
    OPERATOR = "operator"  # an operator's retry or cancel, with who asked
    OTHER = "other"


class Tone(StrEnum):
    """How an event went, for its colour: the same five in the page and in the terminal."""

    OK = "ok"
    FAILED = "failed"
    UNDO = "undo"
    RETRY = "retry"
    INFO = "info"


@dataclass(frozen=True)
class TimelineRow:
    offset_ms: int
    step: str  # "saga" for the saga's own messages (start, outcome)
    direction: str  # sent | received | failed | retried | operator
    event: str  # the message type
    attempt: int
    kind: Kind
    tone: Tone
    detail: str


# Events of the orchestrator's own, by direction (services/orchestrator/stuck.py, interventions.py).
_ORCHESTRATOR_OWN = {
    "failed": (Kind.STUCK, Tone.FAILED),
    "retried": (Kind.REDRIVE, Tone.RETRY),
    "operator": (Kind.OPERATOR, Tone.RETRY),
}
_OUTCOME_TONES = {SAGA_COMPLETED: Tone.OK, SAGA_COMPENSATED: Tone.UNDO, SAGA_FAILED: Tone.FAILED}


def classify(direction: str, event: str, attempt: int) -> tuple[Kind, Tone]:
    """The kind and tone of one history event (`direction`, message type, attempt)."""
    if event == DEAD_LETTER:
        return Kind.DEAD_LETTER, Tone.FAILED
    if direction in _ORCHESTRATOR_OWN:
        return _ORCHESTRATOR_OWN[direction]
    if event in _OUTCOME_TONES:
        return Kind.OUTCOME, _OUTCOME_TONES[event]
    if event == SAGA_START:  # a start again: the initiator re-sent it, unanswered so far
        return (Kind.RESEND, Tone.RETRY) if attempt > 1 else (Kind.START, Tone.INFO)
    if event.startswith("saga."):
        return Kind.OTHER, Tone.INFO
    if direction == "sent":
        if event.endswith(".compensate"):
            return Kind.COMPENSATION, Tone.RETRY if attempt > 1 else Tone.UNDO
        return (Kind.RESEND, Tone.RETRY) if attempt > 1 else (Kind.COMMAND, Tone.INFO)
    if event.endswith(".failed"):
        return Kind.FAILURE, Tone.FAILED
    if event.endswith(".compensated"):
        return Kind.COMPENSATED, Tone.UNDO
    return Kind.SUCCESS, Tone.OK


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def timeline(saga: Mapping[str, Any]) -> list[TimelineRow]:
    """The rows of a saga's history (the JSON of `GET /sagas/{id}`), oldest first."""
    history: list[Mapping[str, Any]] = list(saga.get("history") or [])
    if not history:
        return []
    start = _moment(history[0]["at"])
    rows = []
    for event in history:
        attempt = int(event.get("attempt") or 1)
        kind, tone = classify(str(event["direction"]), str(event["type"]), attempt)
        offset = _moment(event["at"]) - start
        rows.append(
            TimelineRow(
                offset_ms=round(offset.total_seconds() * 1000),
                step=str(event.get("step") or "saga"),
                direction=str(event["direction"]),
                event=str(event["type"]),
                attempt=attempt,
                kind=kind,
                tone=tone,
                detail=str(event.get("detail") or ""),
            )
        )
    return rows


@dataclass(frozen=True)
class StepResult:
    step: str
    result: str  # the step's result as compact JSON; empty when none was received


def step_results(saga: Mapping[str, Any]) -> list[StepResult]:
    """Each step's result (the payload of its done reply), in step order: the steps of the
    saga's state, then any other step a result was kept for."""
    results: Mapping[str, Any] = saga.get("results") or {}
    states: Mapping[str, Any] = saga.get("steps") or {}
    names = [*states, *(name for name in results if name not in states)]
    return [
        StepResult(name, "" if results.get(name) is None else json.dumps(results[name]))
        for name in names
    ]


def status_tone(status: str) -> Tone:
    """The tone of a saga status (COMPLETED ok, COMPENSATED undo, FAILED and STUCK failed,
    else info)."""
    tones = {"COMPLETED": Tone.OK, "COMPENSATED": Tone.UNDO, "FAILED": Tone.FAILED}
    return tones.get(status, Tone.FAILED if status == "STUCK" else Tone.INFO)
