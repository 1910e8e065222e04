"""The simulated services: the orchestrator, the steps (participants) and the order-service
(initiator), each running the project's own decisions, and their timers.

The orchestrator runs the Engine (`sagaline.domain.engine`), each step the participant decisions
(`sagaline.domain.participant_decisions`), the order-service the initiator decisions
(`sagaline.domain.initiator`). What is simulated is what the database code does around them: a
delivery is one transaction at its reader, whose messages go to the outbox (here: straight onto
the network; the relay's own faults are the network's). Time moves only when a timer fires
(messages take no time): the clock jumps to the earliest deadline, the orchestrator's (step
re-sends) or the order-service's (start re-sends).

`Actors` is the second layer of the `World`: the services' records (the saga row, the order row,
each step's outcome and a ledger of effects applied and undone) on top of the `Network`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, TypeVar

from pydantic import BaseModel

from sagaline.domain.engine import (
    Action,
    Engine,
    Finish,
    ResendOutcome,
    SagaState,
    SendCommand,
    SendCompensation,
)
from sagaline.domain.initiator import OrderStatus, Send, SendCancel
from sagaline.domain.messages import SAGA_CANCEL, SAGA_START
from sagaline.domain.participant_decisions import (
    OutcomeStatus,
    Refuse,
    Repeat,
    applied_status,
    on_command,
    on_compensation,
)
from sagaline.services.orchestrator.handler import OUTCOME_TYPES
from sagaline.simulation.model import ORCHESTRATOR_SERVICE, Model
from sagaline.simulation.network import DEAD_LETTER, Msg, Network, Outputs


class RecordedOutcome(NamedTuple):
    """A participant's `step_outcome` row: what it recorded for the saga, and the replies."""

    status: OutcomeStatus
    reply: Msg | None = None
    compensation_reply: Msg | None = None


@dataclass
class OrderRecord:
    """The order-service's `orders` row, as the initiator decisions see it."""

    status: OrderStatus = OrderStatus.PENDING
    start_attempt: int = 1
    cancel_attempt: int = 0
    resend_at: float | None = None
    reason: str | None = None


T = TypeVar("T", bound=BaseModel)


_new = object.__new__
_set = object.__setattr__


def _copy_model(model: T, **changes: object) -> T:
    """A shallow copy of a pydantic model, as its `__copy__` makes one, minus the checks (the
    state is copied on every change the search explores: this is its hottest path)."""
    copied = _new(type(model))
    _set(copied, "__dict__", {**model.__dict__, **changes})
    _set(copied, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_private__", None)
    return copied


def _copy_state(state: SagaState) -> SagaState:
    """A copy the Engine may change."""
    steps = {name: _copy_model(step) for name, step in state.steps.items()}
    return _copy_model(state, steps=steps)


class Actors(Network):
    """The services' records and what each service does with a delivery or a timer."""

    __slots__ = ("_owned", "ledger", "now", "order", "outcomes", "response", "saga")

    def __init__(self, model: Model, *, trace: bool) -> None:
        super().__init__(model, trace=trace)
        self.now = 0.0
        self.saga: SagaState | None = None  # the orchestrator's saga row
        self.response: Msg | None = None  # and the outcome it stored
        self.order = OrderRecord()
        self.outcomes: dict[str, RecordedOutcome | None] = {step: None for step in model.steps}
        self.ledger: dict[str, tuple[int, int]] = {step: (0, 0) for step in model.steps}
        self._owned = True  # the saga and the order are this world's own (copy on write)

    def _own(self) -> None:
        """Before the saga or the order change: a copy of this world's own."""
        if not self._owned:
            self.saga = None if self.saga is None else _copy_state(self.saga)
            self.order = replace(self.order)
            self._owned = True

    # -- what can happen next ---------------------------------------------------------------------

    def next_timer(self) -> float | None:
        deadline = None if self.saga is None else self.saga.next_deadline
        resend = self.order.resend_at
        if deadline is None:
            return resend
        return deadline if resend is None else min(deadline, resend)

    def _commit(self, service: str, outputs: Outputs) -> None:
        if outputs and self.trace is not None:
            self._note(f"{service} sends {', '.join(m.id for _, m in outputs)}")
        for topic, msg in outputs:
            self._enqueue(topic, msg)
        if self.trace is not None:
            self._note(self.summary())

    def summary(self) -> str:
        saga = "no saga"
        if self.saga is not None:
            steps = " ".join(f"{n}:{s.status}/{s.attempt}" for n, s in self.saga.steps.items())
            saga = f"saga {self.saga.status} [{steps}]"
        effects = " ".join(f"{s}:+{a}-{u}" for s, (a, u) in self.ledger.items())
        return f"= {saga}; order {self.order.status}; effects {effects}"

    # -- the timers ---------------------------------------------------------------------------

    def _fire(self) -> None:
        due = self.next_timer()
        assert due is not None
        self._own()
        self.now = max(self.now, due)
        saga = self.saga
        if saga is not None and saga.next_deadline is not None and saga.next_deadline <= self.now:
            actions = Engine(self.m.policy, saga).tick(self.now)
            self._note("orchestrator: step deadline passed")
            self._commit(ORCHESTRATOR_SERVICE, self._orchestrator_out(actions))
        resend = self.order.resend_at
        if resend is not None and resend <= self.now:
            send = self.m.initiator.timed_out(self.order)
            self._initiator_send(send, "start deadline passed")

    def _initiator_send(self, send: Send | None, why: str) -> None:
        if send is None:
            self.order.resend_at = None
            return
        self.order.resend_at = self.now + send.wait_s
        message = send.message
        if isinstance(message, SendCancel):
            msg = Msg(f"{SAGA_CANCEL}#{message.attempt}", SAGA_CANCEL, None, message.attempt)
            msg = msg._replace(detail=message.reason)
        else:
            msg = Msg(f"{SAGA_START}#{message.attempt}", SAGA_START, None, message.attempt)
        self._note(f"{self.m.initiator_name}: {why}")
        self._commit(self.m.initiator_name, [(self.m.saga_topics.orchestrator, msg)])

    # -- the services -------------------------------------------------------------------------

    def _orchestrator(self, topic: str, msg: Msg) -> Outputs:
        self._own()
        policy, now = self.m.policy, self.now
        if topic == self.m.saga_topics.orchestrator:
            new = self.saga is None
            if self.saga is None:
                self.saga = SagaState.new(self.m.steps)
            engine = Engine(policy, self.saga)
            if msg.type == SAGA_CANCEL:
                actions = engine.cancel(msg.detail or "cancelled", now)
                return self._orchestrator_out(actions, answering=msg)
            return self._orchestrator_out(engine.start(now) if new else engine.repeated_start())
        if self.saga is None:
            self._note(
                f"orchestrator: no saga for {msg.id}: dead-lettered to {self.m.saga_topics.dlt}"
            )
            return []
        step = self.m.step_of[topic]
        types = self.m.types[step]
        engine = Engine(policy, self.saga)
        if msg.type == DEAD_LETTER:
            command = msg.detail == self.m.topics[step].command
            reason = f"unprocessable by {step}"
            actions = engine.dead_lettered(step, command=command, reason=reason, now=now)
        elif msg.type == types.done:
            actions = engine.succeeded(step, now)
        elif msg.type == types.compensated:
            actions = engine.compensated(step, now)
        else:
            actions = engine.failed(step, msg.detail or "rejected", now)
        return self._orchestrator_out(actions)

    def _orchestrator_out(self, actions: list[Action], answering: Msg | None = None) -> Outputs:
        out: Outputs = []
        for action in actions:
            if isinstance(action, SendCommand | SendCompensation):
                step, attempt = action.step, action.attempt
                if isinstance(action, SendCommand):
                    type_, topic = self.m.types[step].command, self.m.topics[step].command
                else:
                    type_, topic = self.m.types[step].compensate, self.m.topics[step].compensation
                out.append((topic, Msg(f"{type_}#{attempt}", type_, step, attempt)))
            elif isinstance(action, Finish):
                type_ = OUTCOME_TYPES[action.status]
                self.response = Msg(type_, type_, detail=action.reason)
                out.append((self.m.saga_topics.response, self.response))
            elif isinstance(action, ResendOutcome) and self.response is not None:
                response = self.response
                if action.fresh:  # a new message: named after what it answers
                    answer = "" if answering is None else answering.id
                    response = response._replace(id=f"{response.id}@{answer}")
                out.append((self.m.saga_topics.response, response))
        return out

    def _answer_recorded(self, step: str, msg: Msg) -> Outputs | None:
        """A command's answer when the step recorded its outcome (a refusal after a tombstone,
        or the original reply again); None when the command is to be tried."""
        topics, types, attempt = self.m.topics[step], self.m.types[step], msg.attempt
        decision = on_command(self.outcomes[step])
        if isinstance(decision, Refuse):
            refusal = Msg(f"{types.failed}:refused#{attempt}", types.failed, step, attempt)
            return [(topics.dlt, refusal._replace(detail=decision.reason))]
        if isinstance(decision, Repeat):
            reply: Msg = decision.reply
            return [(topics.success if reply.type == types.done else topics.dlt, reply)]
        return None

    def _participant(self, step: str, topic: str, msg: Msg) -> Outputs:
        topics, types = self.m.topics[step], self.m.types[step]
        outcome = self.outcomes[step]
        attempt = msg.attempt
        if topic == topics.command:
            recorded = self._answer_recorded(step, msg)
            if recorded is not None:
                return recorded
            accepted = self.m.accepts[step]
            if accepted:
                applied, undone = self.ledger[step]
                self.ledger[step] = (applied + 1, undone)
                reply = Msg(f"{types.done}#{attempt}", types.done, step, attempt)
            else:
                reply = Msg(f"{types.failed}#{attempt}", types.failed, step, attempt, "rejected")
            self.outcomes[step] = RecordedOutcome(applied_status(accepted), reply)
            return [(topics.success if accepted else topics.dlt, reply)]
        choice = on_compensation(outcome)
        if isinstance(choice, Repeat):
            return [(topics.success, choice.reply)]
        if choice.tombstone or outcome is None:
            outcome = RecordedOutcome(OutcomeStatus.TOMBSTONE)
        if choice.undo:
            applied, undone = self.ledger[step]
            self.ledger[step] = (applied, undone + 1)
        ack = Msg(f"{types.compensated}#{attempt}", types.compensated, step, attempt, choice.effect)
        self.outcomes[step] = outcome._replace(compensation_reply=ack)
        return [(topics.success, ack)]

    def _initiator(self, msg: Msg) -> Outputs:
        self._own()
        decision = self.m.initiator.answered(self.order, msg.type, msg.detail)
        if decision is not None:
            self.order.resend_at = None
            self.order.reason = decision.reason
        return []
