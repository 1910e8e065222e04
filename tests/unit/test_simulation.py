"""`sagaline simulate`: a bounded run of both searches finds no violation, and the checker does
find one when a decision is broken the way issue 11's holes were (so it cannot pass on a stub).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.domain import participant_decisions
from sagaline.domain.definition import Execution, SagaDefinition, default_definition_path
from sagaline.domain.definition import load_definition as load
from sagaline.domain.engine import Action, Engine, StepStatus
from sagaline.domain.initiator import Initiator, OrderStatus, Send, SendStart, StartRecord
from sagaline.simulation import explore
from sagaline.simulation.explore import exhaustive, random_runs, replay, replay_seed
from sagaline.simulation.faults import Act
from sagaline.simulation.model import Model
from sagaline.simulation.world import World

BOTH = pytest.mark.parametrize("execution", list(Execution), ids=str)


def definition(execution: Execution) -> SagaDefinition:
    return load(default_definition_path()).with_execution(execution)


def problems(report: explore.Report) -> list[str]:
    return [v.problems[0] for v in report.violations]


# -- no violation, both searches, both executions ------------------------------------------


@BOTH
def test_every_schedule_with_a_fault_keeps_the_invariants(execution):
    report = exhaustive(definition(execution), max_faults=1, max_steps=120)
    assert report.violating_schedules == 0, problems(report)
    assert report.schedules > 100
    assert len(report.scenarios) == (3 if execution is Execution.SEQUENTIAL else 4)


def test_every_sequential_schedule_with_two_faults_keeps_the_invariants():
    report = exhaustive(definition(Execution.SEQUENTIAL), max_faults=2, max_steps=120)
    assert report.violating_schedules == 0, problems(report)
    assert report.schedules > 10_000


@BOTH
def test_random_schedules_keep_the_invariants(execution):
    report = random_runs(definition(execution), range(400), max_faults=6, max_steps=400)
    assert report.violating_schedules == 0, problems(report)
    assert report.schedules == 400
    assert set(report.faults) == {
        "drop",
        "duplicate",
        "stale",
        "reorder",
        "dead_letter",
        "poison",
        "delay",
        "crash",
    }


@BOTH
def test_the_reduction_reaches_every_end_state_of_the_full_search(execution):
    full: set[tuple[object, ...]] = set()
    reduced: set[tuple[object, ...]] = set()
    whole = exhaustive(definition(execution), max_faults=1, max_steps=120, reduce=False, ends=full)
    fewer = exhaustive(definition(execution), max_faults=1, max_steps=120, ends=reduced)
    assert reduced == full
    assert fewer.transitions <= whole.transitions


# -- the checker finds what is broken ---------------------------------------------------------


def test_the_checker_sees_an_effect_without_an_approved_order():
    world = World(Model(definition(Execution.SEQUENTIAL), (True, True)), 0)
    assert world.violations(quiescent=True) == [
        "not terminal: the order is still PENDING",
    ]
    world.order.status = OrderStatus.REJECTED
    world.ledger["payment"] = (1, 0)
    assert world.violations(quiescent=True) == [
        "effect standing without an approved order: payment (REJECTED)"
    ]
    world.ledger["payment"] = (2, 2)
    assert world.violations(quiescent=False) == [
        "effect twice: payment applied 2 times",
        "effect twice: payment undone 2 times",
    ]


def old_dead_lettered(
    self: Engine, step: str, *, command: bool, reason: str, now: float
) -> list[Action]:
    """Before the fix of hole 1: a dead-lettered command failed its step, uncompensated."""
    return self.failed(step, reason, now) if command else self._take()


def old_succeeded(self: Engine, step: str, now: float) -> list[Action]:
    """Before the late-success rule: a success for a step no longer running was ignored."""
    state = self.state.steps[step]
    if state.status is StepStatus.RUNNING:
        state.status, state.deadline = StepStatus.SUCCEEDED, None
        self._advance(now)
    return self._take()


def old_timed_out(self: Initiator, order: StartRecord) -> Send | None:
    """Before the fix of hole 3: the start re-sent for ever."""
    order.start_attempt += 1
    return Send(SendStart(order.start_attempt), self.policy.wait_s(order.start_attempt))


def search(execution: Execution) -> explore.Report:
    """Every sequential schedule with two faults (≈2 s); random parallel ones (the exhaustive
    parallel search takes ≈12 s, `make test` has a minute)."""
    if execution is Execution.SEQUENTIAL:
        return exhaustive(definition(execution), max_faults=2, max_steps=120)
    return random_runs(definition(execution), range(2000), max_faults=4, max_steps=300)


@BOTH
def test_hole_1_is_found_with_its_fix_reverted(monkeypatch, execution):
    monkeypatch.setattr(Engine, "dead_lettered", old_dead_lettered)
    monkeypatch.setattr(Engine, "succeeded", old_succeeded)
    report = search(execution)
    assert "effect standing without an approved order" in {
        p.split(":")[0] for p in problems(report)
    }
    violation = next(v for v in report.violations if v.problems[0].startswith("effect standing"))
    kinds = {act.kind for act in violation.script if act.fault}
    assert "dead_letter" in kinds  # a command dead-lettered, another attempt in flight


HOLE_1 = [  # sequential: the first charge in flight, re-sent on timeout, the re-send refused
    Act("deliver", "orchestrator", "saga.start#1"),
    Act("delay"),
    Act("dead_letter", "payment", "payment.charge#2"),
]


def test_the_late_success_rule_closes_the_schedule_of_hole_1(monkeypatch):
    model = Model(definition(Execution.SEQUENTIAL), (True, True))
    monkeypatch.setattr(Engine, "dead_lettered", old_dead_lettered)
    world, _ = replay(model, HOLE_1, 120)
    assert explore.judge(world) == []  # the charge's late success is compensated
    assert world.ledger["payment"] == (1, 1)
    monkeypatch.setattr(Engine, "succeeded", old_succeeded)
    world, _ = replay(model, HOLE_1, 120)
    assert explore.judge(world) == ["effect standing without an approved order: payment (REJECTED)"]


@BOTH
def test_the_late_success_rule_alone_does_not_close_hole_1(monkeypatch, execution):
    """The success may never come again: the orchestrator dead-lettered it, and every repeat of
    a reply is the same message, which its inbox then drops."""
    monkeypatch.setattr(Engine, "dead_lettered", old_dead_lettered)
    report = search(execution)
    assert report.violating_schedules > 0
    faults = [str(act) for act in report.violations[0].script if act.fault]
    assert any(f.startswith("dead_letter") and ".success" in f for f in faults), faults


def test_hole_3_is_found_with_its_fix_reverted(monkeypatch):
    monkeypatch.setattr(Initiator, "timed_out", old_timed_out)
    report = random_runs(definition(Execution.SEQUENTIAL), range(300), max_faults=6, max_steps=300)
    assert report.violating_schedules > 0
    [not_terminal] = [v for v in report.violations if v.problems[0].startswith("not terminal")]
    assert "order PENDING" in not_terminal.problems[0]
    # What the orchestrator never answers: a start it cannot read, or an outcome dead-lettered
    # by the order-service, whose repeats are the same message its inbox drops.
    faults = {act.kind for act in not_terminal.script if act.fault}
    assert faults & {"poison", "dead_letter"}, faults


def test_hole_3_a_start_the_orchestrator_cannot_read(monkeypatch):
    model = Model(definition(Execution.SEQUENTIAL), (True, True))
    poison = [Act("poison", "orchestrator", "saga.start#1")]
    world, _ = replay(model, poison, 200)
    assert explore.judge(world) == []
    assert world.order.status is OrderStatus.REJECTED  # cancelled: the saga never started
    assert world.saga is not None and world.saga.status == "COMPENSATED"
    monkeypatch.setattr(Initiator, "timed_out", old_timed_out)
    world, _ = replay(model, poison, 200)
    assert explore.judge(world)[0].startswith("not terminal: no quiescence after 200 events")


def test_a_participant_that_forgets_its_tombstone_is_found(monkeypatch):
    def forgetful(outcome):
        return (
            participant_decisions.Apply()
            if outcome is None or outcome.reply is None
            else (participant_decisions.Repeat(outcome.reply))
        )

    monkeypatch.setattr("sagaline.simulation.actors.on_command", forgetful)
    report = exhaustive(definition(Execution.PARALLEL), max_faults=1, max_steps=120)
    assert "effect standing without an approved order" in {
        p.split(":")[0] for p in problems(report)
    }


# -- replay ---------------------------------------------------------------------------------


def test_a_seed_replays_the_same_schedule():
    models = explore.Models(definition(Execution.PARALLEL))
    first = explore.run_seed(models, 42, max_faults=6, max_steps=400)
    again = explore.run_seed(models, 42, max_faults=6, max_steps=400)
    assert first[1] == again[1]
    assert first[0].key() == again[0].key()
    world, made = replay(first[0].m, first[1], 400)
    assert made == first[1]
    assert world.key()[:-1] == first[0].key()[:-1]  # all but the faults left (a replay's own)


def test_a_violating_seed_replays_to_a_shorter_schedule_that_still_violates(monkeypatch):
    monkeypatch.setattr(Engine, "dead_lettered", old_dead_lettered)
    monkeypatch.setattr(Engine, "succeeded", old_succeeded)
    saga = definition(Execution.SEQUENTIAL)
    report = random_runs(saga, range(500), max_faults=6, max_steps=400, keep=1)
    [violation] = report.violations
    assert violation.seed is not None
    world, again = replay_seed(saga, violation.seed, max_faults=6, max_steps=400, shrinking=True)
    assert again is not None and again.problems == violation.problems
    assert len(again.script) <= world.steps_taken
    assert any(line.startswith("violated: effect standing") for line in again.trace)
    shrunk, _ = replay(world.m, again.script, 400)
    assert explore.judge(shrunk) == again.problems


# -- the command ------------------------------------------------------------------------------


def test_the_command_prints_one_json_object():
    result = CliRunner().invoke(
        app, ["simulate", "--seeds", "50", "--execution", "parallel", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "random"
    assert summary["execution"] == "parallel"
    assert summary["schedules"] == 50
    assert summary["violations"] == 0
    assert summary["details"] == []
    assert summary["seconds"] >= 0


def test_the_command_exhaustive_and_replay(monkeypatch):
    result = CliRunner().invoke(app, ["simulate", "--exhaustive", "--max-faults", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["mode"], summary["violations"], summary["schedules"]) == ("exhaustive", 0, 3)
    result = CliRunner().invoke(app, ["simulate", "--replay", "7", "--json"])
    assert result.exit_code == 0, result.output
    replayed = json.loads(result.stdout)
    assert replayed["mode"] == "replay" and replayed["trace"]


def test_the_command_exits_1_naming_the_violation(monkeypatch):
    monkeypatch.setattr(Initiator, "timed_out", old_timed_out)
    result = CliRunner().invoke(app, ["simulate", "--seeds", "300", "--max-steps", "200"])
    assert result.exit_code == 1
    assert "not terminal" in result.output
    assert "sagaline simulate --execution sequential --replay" in result.output


def test_an_act_prints_as_a_script_line():
    assert str(Act("deliver", "payment", "payment.charge#1")) == "deliver payment payment.charge#1"
    assert Act("drop", "payment", "x").fault and not Act("timer").fault
