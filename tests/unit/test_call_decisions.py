"""A calling step's decisions (sagaline/domain/call_decisions.py), one rule each."""

from __future__ import annotations

from typing import NamedTuple

from sagaline.domain.call_decisions import (
    Abandon,
    Absorb,
    AwaitCall,
    CallPhase,
    ForgetCall,
    OweApply,
    OweUndo,
    Recording,
    Retry,
    idempotency_key,
    on_call_command,
    on_call_compensation,
    on_call_result,
    on_failed_try,
)
from sagaline.domain.participant_decisions import Compensate, OutcomeStatus, Repeat


class Owed(NamedTuple):
    phase: CallPhase
    calls: int
    compensation_attempt: int | None = None


class Outcome(NamedTuple):
    status: OutcomeStatus
    reply: str | None = "reply"
    compensation_reply: str | None = None


def test_a_command_owes_its_call_once():
    assert on_call_command(None) == OweApply()
    assert on_call_command(Owed(CallPhase.APPLY, 0)) == Absorb()


def test_a_compensation_before_any_try_forgets_the_call_and_leaves_a_tombstone():
    decision: object = on_call_compensation(None, Owed(CallPhase.APPLY, 0))
    assert isinstance(decision, ForgetCall) and decision.compensate.tombstone


def test_a_compensation_during_a_try_waits_once():
    assert on_call_compensation(None, Owed(CallPhase.APPLY, 1)) == AwaitCall()
    assert on_call_compensation(None, Owed(CallPhase.ABANDON, 0)) == AwaitCall()
    assert on_call_compensation(None, Owed(CallPhase.APPLY, 1, 2)) == Absorb()
    assert on_call_compensation(None, Owed(CallPhase.UNDO, 0, 1)) == Absorb()


def test_a_compensation_of_an_applied_effect_owes_the_undo_and_is_repeated_after():
    assert on_call_compensation(Outcome(OutcomeStatus.APPLIED), None) == OweUndo()
    rejected = on_call_compensation(Outcome(OutcomeStatus.REJECTED), None)
    assert isinstance(rejected, Compensate) and not rejected.undo
    done = Outcome(OutcomeStatus.APPLIED, compensation_reply="ack")
    assert on_call_compensation(done, None) == Repeat("ack")


def test_an_apply_is_abandoned_after_max_attempts_and_an_undo_never():
    assert on_failed_try(CallPhase.APPLY, 1, 2) == Retry()
    assert on_failed_try(CallPhase.APPLY, 2, 2) == Abandon()
    assert on_failed_try(CallPhase.UNDO, 99, 2) == Retry()
    assert on_failed_try(CallPhase.ABANDON, 99, 2) == Retry()


def test_a_result_recorded_while_a_compensation_waits():
    assert on_call_result(CallPhase.APPLY, True, None) == Recording(True, False, False)
    assert on_call_result(CallPhase.APPLY, True, 1) == Recording(True, True, False)
    assert on_call_result(CallPhase.APPLY, False, 1) == Recording(True, False, True)
    assert on_call_result(CallPhase.ABANDON, False, 1) == Recording(True, False, True)
    assert on_call_result(CallPhase.UNDO, False, 1) == Recording(False, False, True)


def test_the_key_is_the_same_on_every_try():
    assert idempotency_key("s", "flight", "apply") == "s:flight:apply"
