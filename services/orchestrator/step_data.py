"""Data between steps: what a step's command and its compensation carry.

A step's result is the payload of its done reply, kept on the saga by step. In sequential
execution a step's command carries the saga's initial payload plus the keys the steps before it
added, in step order; a key is never overwritten (the initial payload's keys first, then each
earlier step's new keys), so no step can change what the caller asked for or what an earlier
step said. In parallel execution every command carries the initial payload (no step runs after
another). A compensation carries `{"result": <the step's result, or None>}`: None when the
orchestrator never saw the step's reply (it timed out, or was dead-lettered). See
docs/design.md, "Data between steps".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Results = Mapping[str, Mapping[str, Any]]


def command_payload(
    initial: Mapping[str, Any], results: Results, earlier: Sequence[str]
) -> dict[str, Any]:
    """The payload of a step's command: `initial` and the new keys of the `earlier` steps'
    results, in that order (a step without a result adds nothing)."""
    payload = dict(initial)
    for step in earlier:
        for key, value in (results.get(step) or {}).items():
            payload.setdefault(key, value)
    return payload


def compensation_payload(results: Results, step: str) -> dict[str, Any]:
    """The payload of a step's compensation: its result, or None when none was received."""
    result = results.get(step)
    return {"result": None if result is None else dict(result)}
