"""The pure saga engine: every step outcome, in both execution modes, plus timeouts.

One module past 400 lines on purpose: every case of one pure engine, side by side."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagaline.domain.backoff import BACKOFF_CAP
from sagaline.domain.definition import Execution
from sagaline.domain.engine import (
    Engine,
    Finish,
    Policy,
    SagaState,
    SagaStatus,
    SendCommand,
    SendCompensation,
    StepState,
    StepStatus,
)

TIMEOUT = 10.0
MAX_ATTEMPTS = 3
STEPS = ["payment", "stock"]
SEQ = Execution.SEQUENTIAL
PAR = Execution.PARALLEL
BOTH = pytest.mark.parametrize("execution", [SEQ, PAR], ids=["sequential", "parallel"])


def make(
    execution: Execution,
    steps: list[str] | None = None,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    timeout: float = TIMEOUT,
) -> Engine:
    policy = Policy(execution=execution, step_timeout_s=timeout, max_attempts=max_attempts)
    return Engine(policy, SagaState.new(list(steps or STEPS)))


def started(execution: Execution, steps: list[str] | None = None, **kw) -> Engine:
    engine = make(execution, steps, **kw)
    engine.start(0.0)
    return engine


def statuses(engine: Engine) -> dict[str, StepStatus]:
    return {name: s.status for name, s in engine.state.steps.items()}


def running_with_payment_succeeded(execution: Execution) -> Engine:
    """payment SUCCEEDED, stock RUNNING (stock commanded at t=1 in sequential, t=0 in parallel)."""
    engine = started(execution)
    actions = engine.succeeded("payment", 1.0)
    assert actions == ([SendCommand("stock", 1)] if execution is SEQ else [])
    return engine


# -- policy ------------------------------------------------------------------------------------


def test_policy_deadline_doubles_per_attempt_up_to_the_cap():
    policy = Policy(SEQ, step_timeout_s=10.0, max_attempts=10)
    assert [policy.deadline(100.0, a) - 100.0 for a in range(1, 7)] == [
        10.0,
        20.0,
        40.0,
        80.0,
        80.0,
        80.0,
    ]
    assert BACKOFF_CAP == 8


# -- start -------------------------------------------------------------------------------------


def test_start_sequential_commands_only_the_first_step():
    engine = make(SEQ)
    assert engine.start(5.0) == [SendCommand("payment", 1)]
    assert statuses(engine) == {"payment": StepStatus.RUNNING, "stock": StepStatus.PENDING}
    assert engine.state.steps["payment"].attempt == 1
    assert engine.state.steps["payment"].deadline == engine.policy.deadline(5.0, 1) == 15.0
    assert engine.state.steps["stock"].deadline is None
    assert engine.state.status is SagaStatus.RUNNING


def test_start_parallel_commands_every_step():
    engine = make(PAR, ["payment", "stock", "shipping"])
    assert engine.start(5.0) == [
        SendCommand("payment", 1),
        SendCommand("stock", 1),
        SendCommand("shipping", 1),
    ]
    assert set(statuses(engine).values()) == {StepStatus.RUNNING}
    assert {s.deadline for s in engine.state.steps.values()} == {15.0}


@BOTH
def test_start_twice_does_not_resend(execution):
    engine = started(execution)
    before = engine.state.model_copy(deep=True)
    assert engine.start(1.0) == []
    assert engine.state == before


@BOTH
def test_start_after_progress_does_not_resend(execution):
    engine = running_with_payment_succeeded(execution)
    assert engine.start(2.0) == []
    assert engine.state.steps["payment"].status is StepStatus.SUCCEEDED


# -- all succeed -------------------------------------------------------------------------------


def test_sequential_all_succeed_commands_in_order_then_completes():
    engine = started(SEQ)
    assert engine.succeeded("payment", 1.0) == [SendCommand("stock", 1)]
    assert engine.state.steps["stock"].deadline == engine.policy.deadline(1.0, 1)
    assert engine.state.steps["payment"].deadline is None
    assert engine.succeeded("stock", 2.0) == [Finish(SagaStatus.COMPLETED, None)]
    assert engine.state.status is SagaStatus.COMPLETED
    assert set(statuses(engine).values()) == {StepStatus.SUCCEEDED}
    assert engine.state.next_deadline is None


def test_parallel_all_succeed_in_any_order_completes_on_the_last():
    engine = started(PAR)
    assert engine.succeeded("stock", 1.0) == []
    assert engine.state.status is SagaStatus.RUNNING
    assert engine.succeeded("payment", 2.0) == [Finish(SagaStatus.COMPLETED, None)]
    assert engine.state.status is SagaStatus.COMPLETED
    assert engine.state.next_deadline is None


def test_sequential_three_steps_run_one_after_another():
    engine = make(SEQ, ["payment", "stock", "shipping"])
    assert engine.start(0.0) == [SendCommand("payment", 1)]
    assert engine.succeeded("payment", 1.0) == [SendCommand("stock", 1)]
    assert engine.state.steps["shipping"].status is StepStatus.PENDING
    assert engine.succeeded("stock", 2.0) == [SendCommand("shipping", 1)]
    assert engine.succeeded("shipping", 3.0) == [Finish(SagaStatus.COMPLETED, None)]


def test_parallel_three_steps_complete_only_when_all_succeeded():
    engine = started(PAR, ["payment", "stock", "shipping"])
    assert engine.succeeded("shipping", 1.0) == []
    assert engine.succeeded("payment", 2.0) == []
    assert engine.state.status is SagaStatus.RUNNING
    assert engine.succeeded("stock", 3.0) == [Finish(SagaStatus.COMPLETED, None)]


# -- first step rejected -----------------------------------------------------------------------


def test_sequential_first_step_rejected_compensates_nothing_and_skips_the_rest():
    engine = started(SEQ, ["payment", "stock", "shipping"])
    actions = engine.failed("payment", "insufficient funds", 1.0)
    assert actions == [Finish(SagaStatus.COMPENSATED, "payment: insufficient funds")]
    assert statuses(engine) == {
        "payment": StepStatus.FAILED,
        "stock": StepStatus.SKIPPED,
        "shipping": StepStatus.SKIPPED,
    }
    assert engine.state.steps["payment"].reason == "insufficient funds"
    assert engine.state.status is SagaStatus.COMPENSATED
    assert engine.state.reason == "payment: insufficient funds"
    assert engine.state.next_deadline is None


def test_parallel_first_step_rejected_compensates_the_steps_in_flight():
    engine = started(PAR)
    assert engine.failed("payment", "insufficient funds", 1.0) == [SendCompensation("stock", 1)]
    assert statuses(engine) == {"payment": StepStatus.FAILED, "stock": StepStatus.COMPENSATING}
    assert engine.state.status is SagaStatus.COMPENSATING
    assert engine.compensated("stock", 2.0) == [
        Finish(SagaStatus.COMPENSATED, "payment: insufficient funds")
    ]
    assert statuses(engine) == {"payment": StepStatus.FAILED, "stock": StepStatus.COMPENSATED}


# -- second step rejected ----------------------------------------------------------------------


@BOTH
def test_second_step_rejected_compensates_the_first_only(execution):
    engine = running_with_payment_succeeded(execution)
    assert engine.failed("stock", "out of stock", 3.0) == [SendCompensation("payment", 1)]
    assert statuses(engine) == {"payment": StepStatus.COMPENSATING, "stock": StepStatus.FAILED}
    assert engine.state.status is SagaStatus.COMPENSATING
    assert engine.state.steps["payment"].attempt == 1
    assert engine.state.steps["payment"].deadline == engine.policy.deadline(3.0, 1)
    assert engine.compensated("payment", 4.0) == [
        Finish(SagaStatus.COMPENSATED, "stock: out of stock")
    ]
    assert statuses(engine) == {"payment": StepStatus.COMPENSATED, "stock": StepStatus.FAILED}
    assert engine.state.status is SagaStatus.COMPENSATED
    assert engine.state.next_deadline is None


def test_sequential_third_step_rejected_compensates_both_earlier_steps():
    engine = started(SEQ, ["payment", "stock", "shipping"])
    engine.succeeded("payment", 1.0)
    engine.succeeded("stock", 2.0)
    actions = engine.failed("shipping", "no carrier", 3.0)
    assert actions == [SendCompensation("payment", 1), SendCompensation("stock", 1)]
    assert engine.compensated("stock", 4.0) == []
    assert engine.state.status is SagaStatus.COMPENSATING
    assert engine.compensated("payment", 5.0) == [
        Finish(SagaStatus.COMPENSATED, "shipping: no carrier")
    ]


# -- parallel: a failure while another step is still running -----------------------------------


def test_parallel_stock_fails_while_payment_running_compensates_payment_exactly_once():
    engine = started(PAR)
    sent = []
    sent += engine.failed("stock", "out of stock", 1.0)
    assert sent == [SendCompensation("payment", 1)]
    assert statuses(engine) == {"payment": StepStatus.COMPENSATING, "stock": StepStatus.FAILED}

    # The late command reply (success or refusal) changes nothing while compensating.
    assert engine.succeeded("payment", 2.0) == []
    assert engine.state.steps["payment"].status is StepStatus.COMPENSATING
    assert engine.failed("payment", "refused: compensated before command", 2.5) == []
    assert engine.state.steps["payment"].status is StepStatus.COMPENSATING
    assert engine.state.status is SagaStatus.COMPENSATING
    assert engine.state.reason == "stock: out of stock"
    sent += engine.succeeded("payment", 2.6)
    sent += engine.failed("stock", "out of stock", 2.7)

    sent += engine.compensated("payment", 3.0)
    assert sent == [
        SendCompensation("payment", 1),
        Finish(SagaStatus.COMPENSATED, "stock: out of stock"),
    ]
    assert sum(isinstance(a, SendCompensation) and a.step == "payment" for a in sent) == 1


def test_parallel_late_failure_while_compensating_keeps_the_compensation_going():
    engine = started(PAR, ["payment", "stock", "shipping"])
    engine.succeeded("payment", 1.0)
    assert engine.failed("shipping", "no carrier", 2.0) == [
        SendCompensation("payment", 1),
        SendCompensation("stock", 1),
    ]
    # stock's command reply arrives late, as a rejection: stock must still be compensated
    # (its compensation is already in flight) and the saga must still wait for the ack.
    assert engine.failed("stock", "out of stock", 3.0) == []
    assert engine.state.steps["stock"].status is StepStatus.COMPENSATING
    assert engine.compensated("payment", 4.0) == []
    assert engine.state.status is SagaStatus.COMPENSATING
    assert engine.compensated("stock", 5.0) == [
        Finish(SagaStatus.COMPENSATED, "shipping: no carrier")
    ]


# -- replies that do not match the state -------------------------------------------------------


@BOTH
def test_compensation_ack_for_a_running_step_is_ignored(execution):
    engine = started(execution)
    before = engine.state.model_copy(deep=True)
    assert engine.compensated("payment", 1.0) == []
    assert engine.state == before


@BOTH
def test_compensation_ack_for_a_step_never_compensated_is_ignored(execution):
    engine = running_with_payment_succeeded(execution)
    engine.failed("stock", "out of stock", 2.0)
    # stock was rejected: it was never compensated, its ack must not end the saga.
    assert engine.compensated("stock", 3.0) == []
    assert engine.state.steps["stock"].status is StepStatus.FAILED
    assert engine.state.status is SagaStatus.COMPENSATING
    assert engine.compensated("payment", 4.0) == [
        Finish(SagaStatus.COMPENSATED, "stock: out of stock")
    ]


def test_compensation_ack_for_a_skipped_step_is_ignored():
    engine = started(SEQ, ["payment", "stock", "shipping"])
    engine.succeeded("payment", 1.0)
    engine.failed("stock", "out of stock", 2.0)
    assert engine.state.steps["shipping"].status is StepStatus.SKIPPED
    assert engine.compensated("shipping", 3.0) == []
    assert engine.state.steps["shipping"].status is StepStatus.SKIPPED
    assert engine.state.status is SagaStatus.COMPENSATING


def test_sequential_reply_for_a_step_not_yet_commanded_is_ignored():
    engine = started(SEQ)
    assert engine.succeeded("stock", 1.0) == []
    assert engine.failed("stock", "out of stock", 1.5) == []
    assert statuses(engine) == {"payment": StepStatus.RUNNING, "stock": StepStatus.PENDING}
    assert engine.state.status is SagaStatus.RUNNING
    assert engine.succeeded("payment", 2.0) == [SendCommand("stock", 1)]


# -- duplicates --------------------------------------------------------------------------------


@BOTH
def test_duplicate_success_produces_nothing_new(execution):
    engine = running_with_payment_succeeded(execution)
    assert engine.succeeded("payment", 2.0) == []
    assert engine.succeeded("stock", 3.0) == [Finish(SagaStatus.COMPLETED, None)]
    assert engine.succeeded("stock", 4.0) == []
    assert engine.succeeded("payment", 5.0) == []
    assert engine.state.status is SagaStatus.COMPLETED


@BOTH
def test_duplicate_failure_produces_nothing_new(execution):
    engine = running_with_payment_succeeded(execution)
    assert engine.failed("stock", "out of stock", 2.0) == [SendCompensation("payment", 1)]
    assert engine.failed("stock", "out of stock", 3.0) == []
    assert engine.failed("stock", "another reason", 3.5) == []
    assert engine.state.reason == "stock: out of stock"
    assert engine.state.steps["payment"].attempt == 1


@BOTH
def test_duplicate_compensation_ack_produces_nothing_new(execution):
    engine = running_with_payment_succeeded(execution)
    engine.failed("stock", "out of stock", 2.0)
    assert engine.compensated("payment", 3.0) == [
        Finish(SagaStatus.COMPENSATED, "stock: out of stock")
    ]
    assert engine.compensated("payment", 4.0) == []
    assert engine.state.status is SagaStatus.COMPENSATED


@BOTH
def test_events_after_the_end_produce_nothing(execution):
    engine = running_with_payment_succeeded(execution)
    engine.succeeded("stock", 2.0)
    before = engine.state.model_copy(deep=True)
    assert engine.failed("stock", "late", 3.0) == []
    assert engine.failed("payment", "late", 3.0) == []
    assert engine.compensated("payment", 3.0) == []
    assert engine.tick(1e9) == []
    assert engine.start(1e9) == []
    assert engine.state == before


# -- timeouts ----------------------------------------------------------------------------------


@BOTH
def test_tick_before_the_deadline_does_nothing(execution):
    engine = started(execution)
    before = engine.state.model_copy(deep=True)
    assert engine.tick(TIMEOUT - 0.001) == []
    assert engine.state == before


@BOTH
def test_tick_after_the_deadline_resends_with_backoff(execution):
    engine = started(execution)
    running = ["payment"] if execution is SEQ else STEPS
    policy = engine.policy

    assert engine.tick(10.5) == [SendCommand(name, 2) for name in running]
    for name in running:
        assert engine.state.steps[name].attempt == 2
        assert engine.state.steps[name].deadline == policy.deadline(10.5, 2) == 30.5
    assert engine.tick(30.0) == []  # the second deadline is twice as far

    assert engine.tick(30.5) == [SendCommand(name, 3) for name in running]
    for name in running:
        assert engine.state.steps[name].deadline == policy.deadline(30.5, 3) == 70.5
    assert engine.state.next_deadline == 70.5
    assert engine.state.status is SagaStatus.RUNNING


def test_backoff_is_capped():
    engine = started(SEQ, max_attempts=10)
    now = 0.0
    waits = []
    for attempt in range(2, 7):
        deadline = engine.state.steps["payment"].deadline
        assert deadline is not None
        now = deadline
        assert engine.tick(now) == [SendCommand("payment", attempt)]
        waits.append(engine.state.steps["payment"].deadline - now)
    assert waits == [20.0, 40.0, 80.0, 80.0, 80.0]


def test_a_resent_command_that_then_succeeds_advances_normally():
    engine = started(SEQ)
    engine.tick(10.0)
    assert engine.succeeded("payment", 11.0) == [SendCommand("stock", 1)]
    assert engine.state.steps["payment"].deadline is None
    assert engine.state.steps["stock"].attempt == 1


def exhaust_commands(engine: Engine, now: float = 0.0) -> tuple[float, list]:
    """Ticks at every deadline until the saga leaves RUNNING; returns the time and last actions."""
    actions: list = []
    for _ in range(engine.policy.max_attempts + 1):
        if engine.state.status is not SagaStatus.RUNNING:
            break
        deadline = engine.state.next_deadline
        assert deadline is not None
        now = deadline
        actions = engine.tick(now)
    return now, actions


def test_sequential_running_step_timed_out_is_compensated():
    engine = started(SEQ)
    now, actions = exhaust_commands(engine)
    assert now == 10.0 + 20.0 + 40.0
    assert actions == [SendCompensation("payment", 1)]
    assert statuses(engine) == {"payment": StepStatus.COMPENSATING, "stock": StepStatus.SKIPPED}
    assert engine.state.status is SagaStatus.COMPENSATING
    assert "payment" in engine.state.reason
    assert "timed out" in engine.state.reason
    assert engine.state.steps["payment"].reason == f"no reply after {MAX_ATTEMPTS} attempts"
    assert engine.state.steps["payment"].deadline == engine.policy.deadline(now, 1)
    assert engine.compensated("payment", now + 1) == [
        Finish(SagaStatus.COMPENSATED, engine.state.reason)
    ]
    assert engine.state.status is SagaStatus.COMPENSATED


def test_tick_just_before_the_last_deadline_does_not_give_up():
    engine = started(SEQ)
    engine.tick(10.0)
    engine.tick(30.0)
    assert engine.tick(69.9) == []
    assert engine.state.steps["payment"].status is StepStatus.RUNNING
    assert engine.tick(70.0) == [SendCompensation("payment", 1)]


def test_parallel_timed_out_step_and_succeeded_step_are_both_compensated():
    engine = started(PAR)
    engine.succeeded("stock", 1.0)
    now, actions = exhaust_commands(engine)
    assert sorted(actions, key=lambda a: a.step) == [
        SendCompensation("payment", 1),
        SendCompensation("stock", 1),
    ]
    assert statuses(engine) == {
        "payment": StepStatus.COMPENSATING,
        "stock": StepStatus.COMPENSATING,
    }
    # A late success of the timed-out step is ignored.
    assert engine.succeeded("payment", now + 1) == []
    assert engine.compensated("payment", now + 2) == []
    assert engine.compensated("stock", now + 3) == [
        Finish(SagaStatus.COMPENSATED, engine.state.reason)
    ]


def test_max_attempts_one_gives_up_at_the_first_deadline():
    engine = started(SEQ, max_attempts=1)
    assert engine.tick(10.0) == [SendCompensation("payment", 1)]
    assert engine.tick(20.0) == [
        Finish(
            SagaStatus.FAILED,
            "payment: timed out (no reply after 1 attempts); compensation given up for payment",
        )
    ]


@BOTH
def test_unanswered_compensation_is_resent_then_fails_the_saga(execution):
    engine = running_with_payment_succeeded(execution)
    assert engine.failed("stock", "out of stock", 5.0) == [SendCompensation("payment", 1)]
    policy = engine.policy
    payment = engine.state.steps["payment"]
    assert payment.deadline == policy.deadline(5.0, 1) == 15.0

    assert engine.tick(14.9) == []
    assert engine.tick(15.0) == [SendCompensation("payment", 2)]
    assert payment.deadline == policy.deadline(15.0, 2) == 35.0
    assert engine.tick(35.0) == [SendCompensation("payment", 3)]
    assert payment.deadline == policy.deadline(35.0, 3) == 75.0
    assert engine.state.status is SagaStatus.COMPENSATING

    actions = engine.tick(75.0)
    assert len(actions) == 1
    finish = actions[0]
    assert isinstance(finish, Finish)
    assert finish.status is SagaStatus.FAILED
    assert "payment" in finish.reason
    assert finish.reason.startswith("stock: out of stock")
    assert finish.reason.endswith("compensation given up for payment")
    assert payment.status is StepStatus.COMPENSATION_FAILED
    assert payment.reason == f"compensation unanswered after {MAX_ATTEMPTS} attempts"
    assert engine.state.status is SagaStatus.FAILED
    assert engine.state.reason == finish.reason
    assert engine.state.next_deadline is None
    # A very late ack: the effect was undone after all, and the saga ends COMPENSATED.
    assert engine.compensated("payment", 80.0) == [
        Finish(SagaStatus.COMPENSATED, "stock: out of stock")
    ]
    assert payment.status is StepStatus.COMPENSATED
    assert engine.state.status is SagaStatus.COMPENSATED
    assert engine.state.next_deadline is None


def test_failed_saga_names_only_the_steps_whose_compensation_was_given_up():
    engine = started(PAR, ["payment", "stock", "shipping"])
    assert engine.failed("shipping", "no carrier", 0.0) == [
        SendCompensation("payment", 1),
        SendCompensation("stock", 1),
    ]
    # stock acks its compensation at once; payment never answers.
    assert engine.compensated("stock", 1.0) == []
    assert engine.tick(10.0) == [SendCompensation("payment", 2)]
    assert engine.tick(30.0) == [SendCompensation("payment", 3)]
    assert engine.tick(70.0) == [
        Finish(SagaStatus.FAILED, "shipping: no carrier; compensation given up for payment")
    ]


def test_failed_saga_waits_for_the_other_compensations():
    state = SagaState(
        status=SagaStatus.COMPENSATING,
        reason="shipping: no carrier",
        steps={
            "payment": StepState(status=StepStatus.COMPENSATING, attempt=3, deadline=70.0),
            "stock": StepState(status=StepStatus.COMPENSATING, attempt=1, deadline=100.0),
            "shipping": StepState(status=StepStatus.FAILED, attempt=1, reason="no carrier"),
        },
    )
    engine = Engine(Policy(PAR, TIMEOUT, MAX_ATTEMPTS), state)
    assert engine.tick(70.0) == []  # payment gives up, stock is still compensating: no Finish
    assert state.steps["payment"].status is StepStatus.COMPENSATION_FAILED
    assert state.steps["payment"].deadline is None
    assert state.status is SagaStatus.COMPENSATING
    assert state.next_deadline == 100.0
    assert engine.compensated("stock", 71.0) == [
        Finish(SagaStatus.FAILED, "shipping: no carrier; compensation given up for payment")
    ]


# -- next_deadline and persistence -------------------------------------------------------------


def test_next_deadline_is_the_earliest_step_deadline():
    state = SagaState(
        steps={
            "payment": StepState(status=StepStatus.RUNNING, attempt=2, deadline=25.0),
            "stock": StepState(status=StepStatus.RUNNING, attempt=1, deadline=12.0),
            "shipping": StepState(status=StepStatus.SUCCEEDED),
        }
    )
    assert state.next_deadline == 12.0
    assert SagaState.new(STEPS).next_deadline is None


def test_next_deadline_follows_the_flow():
    engine = started(PAR)
    assert engine.state.next_deadline == 10.0
    engine.succeeded("stock", 1.0)
    engine.tick(10.0)
    assert engine.state.next_deadline == 30.0
    engine = started(SEQ)
    engine.succeeded("payment", 3.0)
    assert engine.state.next_deadline == 13.0
    engine.succeeded("stock", 4.0)
    assert engine.state.next_deadline is None


@BOTH
def test_state_survives_a_json_round_trip_between_events(execution):
    """The orchestrator persists the state between events and rebuilds the engine."""
    engine = running_with_payment_succeeded(execution)
    restored = Engine(engine.policy, SagaState.model_validate_json(engine.state.model_dump_json()))
    assert restored.state == engine.state
    assert restored.start(2.0) == []
    assert restored.failed("stock", "out of stock", 3.0) == [SendCompensation("payment", 1)]
    restored = Engine(
        restored.policy, SagaState.model_validate(restored.state.model_dump(mode="json"))
    )
    assert restored.compensated("payment", 4.0) == [
        Finish(SagaStatus.COMPENSATED, "stock: out of stock")
    ]


# -- properties --------------------------------------------------------------------------------

STEP_POOL = ["payment", "stock", "shipping"]

event_strategy = st.one_of(
    st.tuples(st.just("succeeded"), st.sampled_from(STEP_POOL)),
    st.tuples(st.just("failed"), st.sampled_from(STEP_POOL)),
    st.tuples(st.just("compensated"), st.sampled_from(STEP_POOL)),
    st.tuples(st.just("tick"), st.floats(min_value=0.0, max_value=200.0)),
    st.tuples(st.just("start"), st.just("")),
)


class Checker:
    """Applies events and checks the invariants after each one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = 0.0
        self.commanded: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.finishes: list[Finish] = []

    def apply(self, kind: str, arg) -> None:
        engine = self.engine
        before = engine.state.status
        if kind == "tick":
            self.now += arg
            actions = engine.tick(self.now)
        else:
            self.now += 0.5
            if kind == "start":
                actions = engine.start(self.now)
            elif kind == "succeeded":
                actions = engine.succeeded(arg, self.now)
            elif kind == "failed":
                actions = engine.failed(arg, "rejected", self.now)
            else:
                actions = engine.compensated(arg, self.now)
        self.check(before, actions)

    def check(self, before: SagaStatus, actions: list) -> None:
        state = self.engine.state
        policy = self.engine.policy
        if before.terminal:  # nothing, or a late success reopens it to compensate, or a late
            # compensation acknowledgement finishes a FAILED saga as COMPENSATED
            late_ack = [Finish(SagaStatus.COMPENSATED, state.reason)]
            assert all(isinstance(a, SendCompensation) for a in actions) or (
                before is SagaStatus.FAILED and actions == late_ack
            )
            assert before is not SagaStatus.COMPLETED or actions == []
        if before is not SagaStatus.RUNNING:
            assert not any(isinstance(a, SendCommand) for a in actions)
        for action in actions:
            if isinstance(action, SendCommand):
                assert action.attempt == self.attempts.get(action.step, 0) + 1
                assert action.attempt <= policy.max_attempts
                self.attempts[action.step] = action.attempt
                self.commanded.add(action.step)
            elif isinstance(action, SendCompensation):
                assert action.step in self.commanded, f"compensating never-commanded {action}"
                assert action.attempt <= policy.max_attempts
                assert state.steps[action.step].status is StepStatus.COMPENSATING
            else:
                assert isinstance(action, Finish)
                self.finishes.append(action)
                assert action.status is state.status
                assert action.reason == state.reason
        # A saga ends once, or again after a late success reopened it (never COMPLETED then).
        assert all(f.status is not SagaStatus.COMPLETED for f in self.finishes[1:])
        if state.status is SagaStatus.COMPLETED:
            assert all(s.status is StepStatus.SUCCEEDED for s in state.steps.values())
        if state.status.terminal:
            assert self.finishes, "terminal without a Finish"
            assert state.next_deadline is None
            for step in state.steps.values():
                assert step.status not in (StepStatus.RUNNING, StepStatus.COMPENSATING)
            if state.status is not SagaStatus.COMPLETED:
                assert state.reason
        else:
            assert not self.finishes or state.status is SagaStatus.COMPENSATING
        if state.status is SagaStatus.FAILED:
            failed = [
                n for n, s in state.steps.items() if s.status is StepStatus.COMPENSATION_FAILED
            ]
            assert failed and all(name in state.reason for name in failed)
        for name, step in state.steps.items():
            if step.status in (StepStatus.RUNNING, StepStatus.COMPENSATING):
                assert step.deadline is not None
            if step.status in (StepStatus.FAILED, StepStatus.COMPENSATED, StepStatus.SKIPPED):
                assert step.deadline is None
            if step.status is not StepStatus.PENDING and step.status is not StepStatus.SKIPPED:
                assert name in self.commanded


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    execution=st.sampled_from([SEQ, PAR]),
    n_steps=st.integers(min_value=1, max_value=3),
    max_attempts=st.integers(min_value=1, max_value=3),
    events=st.lists(event_strategy, max_size=40),
)
def test_random_event_sequences_keep_the_invariants(execution, n_steps, max_attempts, events):
    steps = STEP_POOL[:n_steps]
    checker = Checker(make(execution, steps, max_attempts=max_attempts))
    checker.apply("start", "")
    for kind, arg in events:
        if kind != "tick" and kind != "start" and arg not in steps:
            continue
        checker.apply(kind, arg)
    # Liveness: with nobody answering any more, ticking at the deadlines ends the saga.
    for _ in range(2 * n_steps * max_attempts + 2):
        deadline = checker.engine.state.next_deadline
        if deadline is None:
            break
        checker.apply("tick", max(deadline - checker.now, 0.0))
    assert checker.engine.state.status.terminal
    assert checker.finishes[-1].status is checker.engine.state.status


def test_a_compensation_may_be_resent_longer_than_a_command():
    policy = Policy(SEQ, step_timeout_s=10.0, max_attempts=1, compensation_max_attempts=3)
    engine = Engine(policy, SagaState.new(["payment", "stock"]))
    engine.start(0.0)
    assert engine.tick(10.0) == [SendCompensation("payment", 1)]  # the command gave up at once
    assert engine.tick(20.0) == [SendCompensation("payment", 2)]
    assert engine.tick(40.0) == [SendCompensation("payment", 3)]
    [finish] = engine.tick(80.0)
    assert finish.status is SagaStatus.FAILED
    assert engine.state.steps["payment"].reason == "compensation unanswered after 3 attempts"


def test_late_ack_of_one_given_up_compensation_waits_for_the_others():
    """Two compensations given up: the saga stays FAILED (no second outcome) until the last
    one is acknowledged, then ends COMPENSATED."""
    engine = started(PAR, ["payment", "stock", "shipping"])
    engine.failed("shipping", "no carrier", 0.0)
    for attempt in range(MAX_ATTEMPTS):
        engine.tick(1e6 * (attempt + 1))
    assert engine.state.status is SagaStatus.FAILED
    assert engine.compensated("payment", 2e9) == []
    assert engine.state.status is SagaStatus.FAILED
    assert engine.compensated("stock", 2e9) == [
        Finish(SagaStatus.COMPENSATED, "shipping: no carrier")
    ]
    assert engine.state.status is SagaStatus.COMPENSATED


def test_retry_resends_given_up_compensations_with_fresh_attempts():
    engine = started(PAR, ["payment", "stock", "shipping"])
    engine.failed("shipping", "no carrier", 0.0)
    for attempt in range(MAX_ATTEMPTS):
        engine.tick(1e6 * (attempt + 1))
    assert engine.state.status is SagaStatus.FAILED
    assert engine.retry(2e9) == [SendCompensation("payment", 1), SendCompensation("stock", 1)]
    assert engine.state.status is SagaStatus.COMPENSATING
    assert "given up" not in (engine.state.reason or "")
    engine.compensated("payment", 2e9)
    assert engine.compensated("stock", 2e9) == [
        Finish(SagaStatus.COMPENSATED, "shipping: no carrier")
    ]
    assert engine.retry(3e9) == []  # nothing to retry on a COMPENSATED saga
