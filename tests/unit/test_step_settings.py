"""What a step of the Saga may set for itself (its image, command and arguments, its time-out and
attempts), what it falls back to, and the orchestrator's engine and simulation applying it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sagaline.domain.backoff import resend_horizon_s
from sagaline.domain.definition import (
    Execution,
    SagaDefinition,
    StepTiming,
    load_definition,
)
from sagaline.domain.engine import (
    Engine,
    Finish,
    Policy,
    SagaState,
    SagaStatus,
    SendCommand,
    SendCompensation,
    StepStatus,
)
from sagaline.domain.initiator import InitiatorPolicy
from sagaline.service import effective_definition
from sagaline.settings import Settings
from sagaline.simulation.explore import random_runs
from sagaline.simulation.model import Model

ORDER_YAML = Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml"
ORDER = yaml.safe_load(ORDER_YAML.read_text())


def saga(
    payment: dict | None = None, stock: dict | None = None, spec: dict | None = None
) -> SagaDefinition:
    """order.yaml with these settings on its steps (payment, stock) and on its spec."""
    document = copy.deepcopy(ORDER)
    document["spec"].update(spec or {})
    document["spec"]["steps"][0].update(payment or {})
    document["spec"]["steps"][1].update(stock or {})
    return SagaDefinition.model_validate(document)


# -- the model -----------------------------------------------------------------------------------


def test_a_step_that_sets_nothing_has_the_sagas_image_command_and_timing():
    definition = saga()
    spec = definition.spec
    payment = spec.step("payment")
    assert (payment.image, payment.command, payment.args) == (None, None, None)
    assert spec.image_of(payment) == "sagaline:dev"
    assert spec.timing(payment) == StepTiming(
        timeout_s=10, max_attempts=5, compensation_max_attempts=20
    )


def test_a_step_has_its_own_settings_and_falls_back_field_by_field():
    definition = saga(
        payment={
            "image": "registry.example/payments/step:1.4",
            "command": ["payments-step"],
            "args": ["--verbose"],
            "timeoutSeconds": 2.5,
            "maxAttempts": 8,
        },
        stock={"compensationMaxAttempts": 50},
        spec={"compensationMaxAttempts": 30},
    )
    spec = definition.spec
    payment, stock = spec.step("payment"), spec.step("stock")
    assert spec.image_of(payment) == "registry.example/payments/step:1.4"
    assert (payment.command, payment.args) == (["payments-step"], ["--verbose"])
    assert spec.image_of(stock) == "sagaline:dev"
    assert spec.timings() == {
        "payment": StepTiming(timeout_s=2.5, max_attempts=8, compensation_max_attempts=30),
        "stock": StepTiming(timeout_s=10, max_attempts=5, compensation_max_attempts=50),
    }


def test_a_step_read_from_yaml_by_its_aliases(tmp_path):
    document = copy.deepcopy(ORDER)
    document["spec"]["steps"][1].update(timeoutSeconds=60, maxAttempts=2)
    path = tmp_path / "saga.yaml"
    path.write_text(yaml.safe_dump(document))
    stock = load_definition(path).spec.step("stock")
    assert (stock.timeout_seconds, stock.max_attempts) == (60, 2)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"timeoutSeconds": -1}, "timeoutSeconds"),
        ({"timeoutSeconds": 3601}, "timeoutSeconds"),
        ({"maxAttempts": 0}, "maxAttempts"),
        ({"maxAttempts": 101}, "maxAttempts"),
        ({"compensationMaxAttempts": 0}, "compensationMaxAttempts"),
        ({"compensationMaxAttempts": 1001}, "compensationMaxAttempts"),
        ({"image": ""}, "image"),
        ({"command": []}, "command"),
        ({"command": "sagaline serve stock"}, "command"),
        ({"args": ["x"] * 65}, "args"),
        ({"retries": 3}, "retries"),
    ],
)
def test_a_step_setting_out_of_bounds_is_refused_naming_the_field(settings, field, tmp_path):
    with pytest.raises(ValidationError) as refused:
        saga(stock=settings)
    assert f"spec.steps.1.{field}" in str(refused.value)
    # Read from a file, the message names the file and the field.
    document = copy.deepcopy(ORDER)
    document["spec"]["steps"][1].update(settings)
    path = tmp_path / "saga.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match=rf"(?s)invalid saga definition .*steps\.1\.{field}"):
        load_definition(path)


def test_the_bounds_are_the_sagas():
    """What the Saga accepts for itself, a step accepts; what it refuses, a step refuses."""
    for field, highest in (
        ("stepTimeoutSeconds", 3600),
        ("maxAttempts", 100),
        ("compensationMaxAttempts", 1000),
    ):
        step_field = "timeoutSeconds" if field == "stepTimeoutSeconds" else field
        saga(stock={step_field: highest}, spec={field: highest})
        with pytest.raises(ValidationError, match=step_field):
            saga(stock={step_field: highest + 1})
        with pytest.raises(ValidationError, match=field):
            saga(spec={field: highest + 1})


# -- the re-send horizon -------------------------------------------------------------------------


def test_the_resend_horizon_is_the_longest_steps():
    assert saga().resend_horizon_s() == resend_horizon_s(10, 20) == 1430
    slow = saga(stock={"timeoutSeconds": 60})
    assert slow.resend_horizon_s() == resend_horizon_s(60, 20) == 8580
    many = saga(payment={"compensationMaxAttempts": 100})
    assert many.resend_horizon_s() == resend_horizon_s(10, 100)
    # A step that is re-sent for less does not shorten the horizon of the other.
    assert saga(payment={"timeoutSeconds": 1, "compensationMaxAttempts": 1}).resend_horizon_s() == (
        1430
    )


def test_the_inbox_retention_is_checked_against_the_longest_step(tmp_path):
    document = copy.deepcopy(ORDER)
    document["spec"]["steps"][1]["timeoutSeconds"] = 60
    path = tmp_path / "saga.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match="re-send horizon of 8580 s \\(step stock"):
        effective_definition(Settings(saga_file=path, inbox_retention_s=1430))
    assert effective_definition(Settings(saga_file=path, inbox_retention_s=8580))


def test_the_timing_override_applies_to_every_step():
    """`SAGALINE_STEP_TIMEOUT_SECONDS` / `SAGALINE_MAX_ATTEMPTS` (the lab's fast runs) set the
    timing of the whole saga; a step's own compensation attempts stay."""
    definition = saga(stock={"timeoutSeconds": 60, "maxAttempts": 9, "compensationMaxAttempts": 7})
    fast = definition.with_timing(0.5, 2).spec
    assert fast.timing(fast.step("stock")) == StepTiming(0.5, 2, 7)
    assert fast.timing(fast.step("payment")) == StepTiming(0.5, 2, 20)


def test_a_start_waits_for_every_steps_first_attempt_and_one_more():
    assert InitiatorPolicy.of(saga()).start_timeout_s == 30
    assert InitiatorPolicy.of(saga(stock={"timeoutSeconds": 60})).start_timeout_s == 80


# -- the engine ----------------------------------------------------------------------------------

# payment: answers fast or not at all, tried often; stock: slow, tried twice, undone 3 times.
PER_STEP = {
    "payment": {"timeoutSeconds": 1, "maxAttempts": 4, "compensationMaxAttempts": 1},
    "stock": {"timeoutSeconds": 20, "maxAttempts": 2, "compensationMaxAttempts": 3},
}


def engine(execution: Execution = Execution.SEQUENTIAL) -> Engine:
    definition = saga(PER_STEP["payment"], PER_STEP["stock"], {"execution": str(execution)})
    return Engine(Policy.of(definition), SagaState.new(definition.step_names))


def test_the_policy_of_a_saga_has_each_steps_timing():
    policy = engine().policy
    assert policy.timing("payment") == StepTiming(1, 4, 1)
    assert policy.timing("stock") == StepTiming(20, 2, 3)
    assert policy.deadline(100.0, 2, "payment") == 102.0
    assert policy.deadline(100.0, 2, "stock") == 140.0


def test_each_step_is_re_sent_with_its_own_timeout_and_given_up_after_its_own_attempts():
    saga_ = engine()
    assert saga_.start(0.0) == [SendCommand("payment", 1)]
    payment, stock = saga_.state.steps["payment"], saga_.state.steps["stock"]
    assert payment.deadline == 1.0
    # payment waits its own 1 s, doubling, and its 4th attempt (stock may have 2) is answered.
    assert saga_.tick(1.0) == [SendCommand("payment", 2)]
    assert saga_.tick(3.0) == [SendCommand("payment", 3)]
    assert saga_.tick(7.0) == [SendCommand("payment", 4)]
    assert saga_.succeeded("payment", 8.0) == [SendCommand("stock", 1)]
    # stock waits its own 20 s, then 40 s, and is given up after its own 2 attempts.
    assert stock.deadline == 28.0
    assert saga_.tick(27.9) == []
    assert saga_.tick(28.0) == [SendCommand("stock", 2)]
    assert stock.deadline == 68.0
    actions = saga_.tick(68.0)
    assert actions == [SendCompensation("payment", 1), SendCompensation("stock", 1)]
    assert stock.reason == "no reply after 2 attempts"
    assert saga_.state.reason == "stock: timed out (no reply after 2 attempts)"
    # Each compensation with its own time-out and attempts: payment's one is given up at its
    # first deadline, stock's is re-sent until its own third attempt.
    assert (payment.deadline, stock.deadline) == (69.0, 88.0)
    assert saga_.tick(69.0) == []
    assert payment.status is StepStatus.COMPENSATION_FAILED
    assert saga_.tick(88.0) == [SendCompensation("stock", 2)]
    assert saga_.tick(128.0) == [SendCompensation("stock", 3)]
    reason = "stock: timed out (no reply after 2 attempts); compensation given up for payment"
    assert saga_.compensated("stock", 130.0) == [Finish(SagaStatus.FAILED, reason)]


def test_in_parallel_one_step_is_given_up_while_the_other_still_waits():
    saga_ = engine(Execution.PARALLEL)
    assert saga_.start(0.0) == [SendCommand("payment", 1), SendCommand("stock", 1)]
    assert saga_.succeeded("payment", 0.5) == []
    # With a single Saga-level policy both would share one time-out; stock's is its own 20 s.
    assert saga_.tick(1.0) == []
    assert saga_.tick(20.0) == [SendCommand("stock", 2)]
    assert saga_.tick(60.0) == [SendCompensation("payment", 1), SendCompensation("stock", 1)]
    assert saga_.state.status is SagaStatus.COMPENSATING


def test_a_policy_without_step_timings_is_the_sagas_for_every_step():
    policy = Policy(Execution.SEQUENTIAL, step_timeout_s=10.0, max_attempts=3)
    assert policy.timing("payment") == policy.timing() == StepTiming(10.0, 3, 3)


# -- the simulation ------------------------------------------------------------------------------


def test_the_simulation_runs_the_orchestrators_per_step_policy():
    definition = saga(PER_STEP["payment"], PER_STEP["stock"])
    model = Model(definition, (True, True))
    assert model.policy == Policy.of(definition)
    assert model.policy.timing("stock") == StepTiming(20, 2, 3)


# Time-outs and attempts of their own, with compensations that outlast the faults of a run (one
# given up leaves an effect standing: the saga ends FAILED, which the checker counts a violation).
SIMULATED = {
    "payment": {"timeoutSeconds": 1, "maxAttempts": 2, "compensationMaxAttempts": 12},
    "stock": {"timeoutSeconds": 20, "maxAttempts": 4, "compensationMaxAttempts": 10},
}


@pytest.mark.parametrize("execution", list(Execution), ids=str)
def test_random_schedules_with_per_step_settings_keep_the_invariants(execution):
    definition = saga(SIMULATED["payment"], SIMULATED["stock"], {"execution": str(execution)})
    report = random_runs(definition, range(150), max_faults=6, max_steps=400)
    assert report.violating_schedules == 0, [v.problems[0] for v in report.violations]
    assert report.schedules == 150
