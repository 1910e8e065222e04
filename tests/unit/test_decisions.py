"""The pure decisions: a participant's, the initiator's, and the Engine's answers to a
dead-lettered command, a late success and a cancel (issue 11's holes 1 and 3)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sagaline.domain.definition import Execution, default_definition_path, load_definition
from sagaline.domain.engine import (
    Engine,
    Finish,
    Policy,
    ResendOutcome,
    SagaState,
    SagaStatus,
    SendCommand,
    SendCompensation,
    StepStatus,
)
from sagaline.domain.initiator import (
    Decide,
    Initiator,
    InitiatorPolicy,
    OrderStatus,
    SendCancel,
    SendStart,
)
from sagaline.domain.messages import SAGA_COMPENSATED, SAGA_COMPLETED, SAGA_FAILED
from sagaline.domain.participant_decisions import (
    NOTHING_TO_UNDO_REJECTED,
    NOTHING_TO_UNDO_TOMBSTONE,
    REFUSED,
    UNDONE,
    Apply,
    Compensate,
    OutcomeStatus,
    Refuse,
    Repeat,
    applied_status,
    on_command,
    on_compensation,
)

SEQ, PAR = Execution.SEQUENTIAL, Execution.PARALLEL
STEPS = ["payment", "stock"]


@dataclass
class RecordedOutcome:
    """What a participant recorded for a saga, as the decisions read it."""

    status: OutcomeStatus
    reply: str | None = None
    compensation_reply: str | None = None


# -- the participant ------------------------------------------------------------------------


def test_a_first_command_is_tried_and_its_result_recorded():
    assert on_command(None) == Apply()
    assert applied_status(True) is OutcomeStatus.APPLIED
    assert applied_status(False) is OutcomeStatus.REJECTED


@pytest.mark.parametrize("status", [OutcomeStatus.APPLIED, OutcomeStatus.REJECTED])
def test_a_later_command_gets_the_original_reply(status):
    assert on_command(RecordedOutcome(status, reply="the reply")) == Repeat("the reply")
    compensated = RecordedOutcome(status, reply="the reply", compensation_reply="ack")
    assert on_command(compensated) == Repeat("the reply")  # after the undo too: no new effect


def test_a_command_after_a_compensation_is_refused():
    tombstone = RecordedOutcome(OutcomeStatus.TOMBSTONE, compensation_reply="ack")
    assert on_command(tombstone) == Refuse(REFUSED)


def test_a_compensation_before_any_command_leaves_a_tombstone():
    assert on_compensation(None) == Compensate(
        tombstone=True, undo=False, effect=NOTHING_TO_UNDO_TOMBSTONE
    )


def test_a_compensation_undoes_an_applied_effect_once():
    applied = RecordedOutcome(OutcomeStatus.APPLIED, reply="charged")
    assert on_compensation(applied) == Compensate(tombstone=False, undo=True, effect=UNDONE)
    undone = RecordedOutcome(OutcomeStatus.APPLIED, reply="charged", compensation_reply="ack")
    assert on_compensation(undone) == Repeat("ack")


def test_a_rejected_command_has_nothing_to_undo():
    rejected = RecordedOutcome(OutcomeStatus.REJECTED, reply="failed")
    assert on_compensation(rejected) == Compensate(
        tombstone=False, undo=False, effect=NOTHING_TO_UNDO_REJECTED
    )


# -- the initiator --------------------------------------------------------------------------


@dataclass
class Order:
    status: OrderStatus = OrderStatus.PENDING
    start_attempt: int = 0
    cancel_attempt: int = 0


def initiator(max_start_attempts: int = 3) -> Initiator:
    return Initiator(InitiatorPolicy(start_timeout_s=30.0, max_start_attempts=max_start_attempts))


def test_the_policy_follows_the_saga_definition():
    definition = load_definition(default_definition_path())
    policy = InitiatorPolicy.of(definition)
    spec = definition.spec
    assert policy.start_timeout_s == spec.step_timeout_seconds * (len(spec.steps) + 1)
    assert policy.max_start_attempts == spec.max_attempts
    assert InitiatorPolicy.of(definition, 2.5).start_timeout_s == 2.5


def test_the_start_is_re_sent_then_given_up_for_a_cancel_re_sent_until_answered():
    decide, order = initiator(3), Order()
    first = decide.place(order)
    assert (first.message, first.wait_s) == (SendStart(1), 30.0)
    sent = [decide.timed_out(order) for _ in range(6)]
    messages = [send.message for send in sent if send is not None]
    assert [type(m).__name__ for m in messages] == ["SendStart"] * 2 + ["SendCancel"] * 4
    assert messages[1] == SendStart(3)
    assert [m.attempt for m in messages[2:]] == [1, 2, 3, 4]
    assert isinstance(messages[2], SendCancel) and "after 3 attempts" in messages[2].reason
    assert [send.wait_s for send in sent if send is not None] == [60, 120, 30, 60, 120, 240]
    assert order.status is OrderStatus.PENDING  # never decided alone


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (SAGA_COMPLETED, OrderStatus.APPROVED),
        (SAGA_COMPENSATED, OrderStatus.REJECTED),
        (SAGA_FAILED, OrderStatus.REJECTED),
    ],
)
def test_the_first_outcome_decides_and_a_later_one_is_a_repeat(outcome, status):
    decide, order = initiator(), Order()
    decide.place(order)
    decision = decide.answered(order, outcome, None if status is OrderStatus.APPROVED else "why")
    assert decision == Decide(status, None if status is OrderStatus.APPROVED else "why")
    assert decide.answered(order, SAGA_COMPLETED, None) is None
    assert decide.timed_out(order) is None
    assert order.status is status


def test_an_outcome_during_the_cancels_decides_too():
    decide, order = initiator(1), Order()
    decide.place(order)
    assert isinstance(decide.timed_out(order).message, SendCancel)
    assert decide.answered(order, SAGA_COMPLETED, None) == Decide(OrderStatus.APPROVED, None)


# -- the engine: hole 1, late successes, cancels --------------------------------------------


def engine(execution: Execution, compensation_max_attempts: int = 3) -> Engine:
    policy = Policy(execution, 10.0, 3, compensation_max_attempts)
    return Engine(policy, SagaState.new(STEPS))


def test_a_dead_lettered_command_is_compensated_like_a_timed_out_one():
    saga = engine(SEQ)
    saga.start(0.0)
    saga.tick(10.0)  # attempt 2 in flight, attempt 1 maybe too
    actions = saga.dead_lettered("payment", command=True, reason="unprocessable", now=11.0)
    assert actions == [SendCompensation("payment", 1)]  # it leaves a tombstone at least
    assert saga.state.steps["payment"].status is StepStatus.COMPENSATING
    assert saga.state.steps["stock"].status is StepStatus.SKIPPED
    assert saga.compensated("payment", 12.0) == [
        Finish(SagaStatus.COMPENSATED, "payment: unprocessable")
    ]


def test_a_dead_lettered_compensation_or_late_dead_letter_changes_nothing():
    saga = engine(PAR)
    saga.start(0.0)
    assert saga.dead_lettered("payment", command=False, reason="x", now=1.0) == []
    saga.succeeded("payment", 2.0)
    assert saga.dead_lettered("payment", command=True, reason="x", now=3.0) == []
    assert saga.state.steps["payment"].status is StepStatus.SUCCEEDED


def test_a_late_success_for_a_rejected_step_of_an_ended_saga_is_compensated():
    saga = engine(SEQ)
    saga.start(0.0)
    assert saga.failed("payment", "insufficient funds", 1.0) == [
        Finish(SagaStatus.COMPENSATED, "payment: insufficient funds")
    ]
    assert saga.succeeded("payment", 2.0) == [SendCompensation("payment", 1)]
    assert saga.state.status is SagaStatus.COMPENSATING  # reopened until the undo is answered
    assert saga.repeated_start() == []
    assert saga.compensated("payment", 3.0) == [
        Finish(SagaStatus.COMPENSATED, "payment: insufficient funds")
    ]
    assert saga.succeeded("payment", 4.0) == []  # compensated: its effect is gone


def test_a_late_success_after_a_compensation_given_up_is_compensated_again():
    saga = engine(SEQ, compensation_max_attempts=1)
    saga.start(0.0)
    saga.succeeded("payment", 1.0)
    saga.failed("stock", "out of stock", 2.0)
    [finish] = saga.tick(12.0)
    assert finish.status is SagaStatus.FAILED
    assert saga.succeeded("payment", 13.0) == [SendCompensation("payment", 1)]
    assert saga.compensated("payment", 14.0) == [
        Finish(SagaStatus.COMPENSATED, "stock: out of stock")
    ]


def test_a_late_compensation_given_up_again_ends_the_saga_failed():
    saga = engine(SEQ, compensation_max_attempts=1)
    saga.start(0.0)
    saga.failed("payment", "refused", 1.0)
    saga.succeeded("payment", 2.0)
    [finish] = saga.tick(12.0)
    assert finish == Finish(
        SagaStatus.FAILED, "payment: refused; compensation given up for payment"
    )


def test_a_cancel_of_a_saga_never_started_ends_it_compensated_with_nothing_run():
    saga = engine(SEQ)
    actions = saga.cancel("cancelled: gave up", 0.0)
    assert actions == [Finish(SagaStatus.COMPENSATED, "cancelled: gave up")]
    assert {s.status for s in saga.state.steps.values()} == {StepStatus.SKIPPED}
    assert saga.start(1.0) == []
    assert saga.repeated_start() == [ResendOutcome()]


def test_a_cancel_of_a_running_saga_compensates_what_may_have_taken_effect():
    saga = engine(PAR)
    assert saga.start(0.0) == [SendCommand("payment", 1), SendCommand("stock", 1)]
    saga.succeeded("payment", 1.0)
    assert saga.cancel("cancelled", 2.0) == [
        SendCompensation("payment", 1),
        SendCompensation("stock", 1),
    ]
    assert saga.cancel("cancelled", 3.0) == []  # compensating: its outcome will come


@pytest.mark.parametrize("execution", [SEQ, PAR])
def test_a_cancel_of_an_ended_saga_answers_its_outcome_in_a_new_message(execution):
    saga = engine(execution)
    saga.start(0.0)
    saga.succeeded("payment", 1.0)
    saga.succeeded("stock", 2.0)
    assert saga.state.status is SagaStatus.COMPLETED
    assert saga.cancel("cancelled", 3.0) == [ResendOutcome(fresh=True)]
    assert saga.state.status is SagaStatus.COMPLETED
