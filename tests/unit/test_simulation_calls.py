"""`sagaline simulate` with calling steps (sagaline/simulation/calls.py): the calling protocol
explored with no violation, every path of it reached, and the checker finding a calling step
whose decisions are broken (so that it cannot pass on a stub)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.domain import call_decisions
from sagaline.domain.call_decisions import CallPhase, Recording
from sagaline.domain.definition import Execution, SagaDefinition, default_definition_path
from sagaline.domain.definition import load_definition as load
from sagaline.domain.participant_decisions import on_compensation
from sagaline.simulation import calls, explore
from sagaline.simulation.calls import SIMULATED_MAX_ATTEMPTS, calling_steps
from sagaline.simulation.explore import exhaustive, random_runs

BOTH = pytest.mark.parametrize("execution", list(Execution), ids=str)
TRAVEL = Path(__file__).parents[2] / "examples" / "travel" / "saga.yaml"
CALLING = {"payment": SIMULATED_MAX_ATTEMPTS, "stock": SIMULATED_MAX_ATTEMPTS}


def order_saga(execution: Execution) -> SagaDefinition:
    """The 2-step order saga: its steps made calling steps by the override."""
    return load(default_definition_path()).with_execution(execution)


def first_problems(report: explore.Report) -> set[str]:
    return {v.problems[0].split(":", 1)[0] for v in report.violations}


# -- which steps call -----------------------------------------------------------------------------


def test_the_travel_steps_are_calling_steps_by_their_declarations():
    assert calling_steps(load(TRAVEL)) == {"flight": 2, "hotel": 2, "car": 2}
    assert calling_steps(load(default_definition_path())) == {}  # transactional declarations


def test_the_option_overrides_the_declarations():
    assert calling_steps(load(TRAVEL), ["hotel"]) == {"hotel": 2}
    assert calling_steps(load(TRAVEL), [""]) == {}
    with pytest.raises(ValueError, match="no step boat"):
        calling_steps(load(TRAVEL), ["flight", "boat"])


# -- no violation ---------------------------------------------------------------------------------


@BOTH
def test_every_schedule_of_calling_steps_with_a_fault_keeps_the_invariants(execution):
    report = exhaustive(order_saga(execution), max_faults=1, max_steps=120, calling=CALLING)
    assert report.violating_schedules == 0, [v.problems for v in report.violations]
    assert report.calling == ["payment", "stock"]
    assert report.schedules > 500


def test_every_path_of_the_calling_protocol_is_explored_with_two_faults(monkeypatch):
    """Sequential, two faults: every decision of the calling step is taken, and the partner
    sees a late booking after its cancellation (refused) and before it (then cancelled)."""
    taken: Counter[str] = Counter()

    def counting(name: str) -> Callable[..., Any]:
        decide = getattr(call_decisions, name)

        def counted(*args: Any) -> Any:
            decision = decide(*args)
            taken[
                repr(decision) if isinstance(decision, Recording) else type(decision).__name__
            ] += 1
            return decision

        return counted

    for name in ("on_call_command", "on_call_compensation", "on_failed_try", "on_call_result"):
        monkeypatch.setattr(calls, name, counting(name))
    seen: Counter[tuple[CallPhase, object, object]] = Counter()
    partner = calls.Calls._partner

    def watched(world: calls.Calls, step: str, phase: CallPhase, key: str) -> bool:
        before = dict(world.books[step]).get(key)
        answer = partner(world, step, phase, key)
        seen[phase, before, dict(world.books[step]).get(key)] += 1
        return answer

    monkeypatch.setattr(calls.Calls, "_partner", watched)
    saga = order_saga(Execution.SEQUENTIAL)
    report = exhaustive(saga, max_faults=2, max_steps=120, calling=CALLING)
    assert report.violating_schedules == 0, [v.problems for v in report.violations]
    for decision in (
        "OweApply",
        "Absorb",
        "ForgetCall",
        "AwaitCall",
        "OweUndo",
        "Retry",
        "Abandon",
    ):
        assert taken[decision], decision
    for recording in (
        Recording(result=False, undo_next=False, acknowledge=True),  # an undo, acknowledged
        Recording(result=True, undo_next=True, acknowledge=False),  # applied while waited for
        Recording(result=True, undo_next=False, acknowledge=True),  # refused while waited for
    ):
        assert taken[repr(recording)], recording
    booked, cancelled = calls.Booking.BOOKED, calls.Booking.CANCELLED
    void, refused = calls.Booking.VOID, calls.Booking.REFUSED
    assert seen[CallPhase.ABANDON, None, void]  # cancelled by its key before it came
    assert seen[CallPhase.APPLY, void, refused]  # then refused when it came
    assert seen[CallPhase.ABANDON, booked, cancelled]  # or came first, then cancelled


@BOTH
def test_random_schedules_of_calling_steps_keep_the_invariants(execution):
    report = random_runs(
        order_saga(execution), range(300), max_faults=6, max_steps=400, calling=CALLING
    )
    assert report.violating_schedules == 0, [v.problems for v in report.violations]
    assert {"call_timeout", "worker_crash"} <= set(report.faults)


# -- the checker finds what is broken -------------------------------------------------------------


def test_a_worker_that_changes_its_key_on_retry_is_found(monkeypatch):
    monkeypatch.setattr(calls, "apply_key", lambda step, tries: f"saga:{step}:apply#{tries}")
    report = exhaustive(
        order_saga(Execution.SEQUENTIAL), max_faults=1, max_steps=120, calling=CALLING
    )
    assert report.violating_schedules > 0
    [violation] = [v for v in report.violations if "booked twice" in " ".join(v.problems)][:1]
    assert any("WORKER_CRASH" in line for line in violation.trace)


def test_a_compensation_that_does_not_wait_for_the_call_is_found(monkeypatch):
    """Compensated at once although a call is owed: its booking comes after the tombstone."""

    def hasty(outcome: Any, owed: Any) -> Any:
        if owed is not None and owed.phase is CallPhase.APPLY:
            return on_compensation(outcome)
        return call_decisions.on_call_compensation(outcome, owed)

    monkeypatch.setattr(calls, "on_call_compensation", hasty)
    report = exhaustive(
        order_saga(Execution.PARALLEL), max_faults=0, max_steps=120, calling=CALLING
    )
    assert "booking standing after compensation" in first_problems(report)


def test_a_result_that_forgets_the_waiting_compensation_is_found(monkeypatch):
    """An applied call recorded while a compensation waits, acknowledged without its undo."""

    def forgetful(phase: CallPhase, applied: bool, waiting: int | None) -> Recording:
        decided = call_decisions.on_call_result(phase, applied, waiting)
        return Recording(result=decided.result, undo_next=False, acknowledge=waiting is not None)

    monkeypatch.setattr(calls, "on_call_result", forgetful)
    report = exhaustive(
        order_saga(Execution.PARALLEL), max_faults=0, max_steps=120, calling=CALLING
    )
    assert "booking standing after compensation" in first_problems(report)


# -- the command ----------------------------------------------------------------------------------


def test_the_command_explores_the_travel_saga_as_calling_steps():
    args = ["simulate", "--exhaustive", "--max-faults", "0", "--saga-file", str(TRAVEL), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["calling_steps"] == ["flight", "hotel", "car"]
    assert summary["violations"] == 0
    transactional = CliRunner().invoke(app, [*args, "--calling-steps", ""])
    assert json.loads(transactional.stdout)["calling_steps"] == []
    unknown = CliRunner().invoke(app, [*args, "--calling-steps", "boat"])
    assert unknown.exit_code == 2 and "no step boat" in unknown.output
