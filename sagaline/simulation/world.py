"""The simulated world of one saga: its services, an in-memory network, a clock and faults.

The services run the project's own decisions: the orchestrator the Engine
(`sagaline.domain.engine`), each step the participant decisions
(`sagaline.domain.participant_decisions`), the order-service the initiator decisions
(`sagaline.domain.initiator`). What is simulated is what the database code and Kafka do around
them, at the level of the delivery rules of DESIGN.md:

- A message (`Msg`) is named by what it is (`payment.charge#2`, the reply a participant stored,
  the outcome of the saga), as the real ids are fixed where the real code stores a message and
  fresh where it makes a new one, so states reached by different schedules compare equal.
- The network is one FIFO channel per topic, read by one service (one saga's messages of one
  topic stay in order on one partition). Delivering a channel's head is free, and which channel
  is the scheduler's choice: every interleaving across topics is a schedule.
- A delivery is one transaction at its reader: the inbox drops an id it has seen, else the
  decision runs and its messages go to the outbox (here: straight onto the network; the relay's
  own faults are the network's). A copy of a message whose id its reader's inbox holds would be
  dropped on arrival and change nothing: it is dropped at once (so states that differ only by
  such copies are one).
- Time moves only when a timer fires (messages take no time): the clock jumps to the earliest
  deadline, the orchestrator's (step re-sends) or the order-service's (start re-sends).

Faults, each counted against the run's budget: `drop` any message in flight; `duplicate` one (a
copy at its channel's tail: the relay published it twice); `stale` (a copy of a message its
reader handled, delivered after the inbox forgot the id); `reorder` (deliver a message that is
not its channel's head); `dead_letter` (the reader cannot take the head: it is dead-lettered,
its id claimed; a step's dead letters go to `<step>.dlt`, which the orchestrator reads);
`poison` (the reader can never take that message: a start or a command whose payload it cannot
read, so every copy and every re-send is dead-lettered from then on); `delay` (a timer fires
while messages are in flight: they all arrive after the timeout); `crash` (a service loses its
uncommitted work: what it read since its last offset commit is delivered again, which its inbox
drops, and its relay publishes again what it had not seen acknowledged: every message of it
still in flight). With the inbox claimed in the transaction that applies the effect, a crash can
only duplicate: the simulation shows it rather than assumes it.

`stale` copies are made of what the orchestrator and the order-service read: a participant's
decisions look at its outcome record, never at message ids, so a stale copy of a command or a
compensation is a re-send by another name, which the timers already make.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, TypeVar

from pydantic import BaseModel

from sagaline.domain.definition import SagaDefinition
from sagaline.domain.engine import (
    Action,
    Engine,
    Finish,
    Policy,
    ResendOutcome,
    SagaState,
    SagaStatus,
    SendCommand,
    SendCompensation,
)
from sagaline.domain.initiator import Initiator, InitiatorPolicy, OrderStatus, Send, SendCancel
from sagaline.domain.messages import (
    ORCHESTRATOR,
    ORCHESTRATOR_RESPONSE,
    SAGA_CANCEL,
    SAGA_START,
    StepTopics,
    StepTypes,
)
from sagaline.domain.participant_decisions import (
    OutcomeStatus,
    Refuse,
    Repeat,
    applied_status,
    on_command,
    on_compensation,
)
from sagaline.services.orchestrator.handler import OUTCOME_TYPES

ORCHESTRATOR_SERVICE = "orchestrator"
DEAD_LETTER = "dead-letter"
FREE = frozenset({"deliver", "timer"})
FAULT_KINDS = ("drop", "duplicate", "stale", "reorder", "dead_letter", "poison", "delay", "crash")


class Msg(NamedTuple):
    id: str
    type: str
    step: str | None = None
    attempt: int = 1
    detail: str | None = None  # a failure's reason, an outcome's reason, a dead letter's origin
    stale: bool = False  # a copy whose id its reader's inbox no longer holds

    @property
    def label(self) -> str:
        return f"{self.id} (stale)" if self.stale else self.id


class Outcome(NamedTuple):
    """A participant's `step_outcome` row."""

    status: OutcomeStatus
    reply: Msg | None = None
    compensation_reply: Msg | None = None


class Act(NamedTuple):
    """One choice of the scheduler: a kind, and the message (topic, label) or service it is on."""

    kind: str
    topic: str = ""
    label: str = ""

    @property
    def fault(self) -> bool:
        return self.kind not in FREE

    def __str__(self) -> str:
        return " ".join(part for part in (self.kind, self.topic, self.label) if part)


@dataclass
class OrderRecord:
    """The order-service's `orders` row, as the initiator decisions see it."""

    status: OrderStatus = OrderStatus.PENDING
    start_attempt: int = 1
    cancel_attempt: int = 0
    resend_at: float | None = None
    reason: str | None = None


Outputs = list[tuple[str, Msg]]
T = TypeVar("T", bound=BaseModel)


class Model:
    """What a run does not change: the definition, the policies and the business answers (does
    each step accept the command, or reject it by its rules)."""

    def __init__(self, definition: SagaDefinition, accepts: tuple[bool, ...]) -> None:
        spec = definition.spec
        self.definition = definition
        self.execution = spec.execution
        self.steps = definition.step_names
        if len(accepts) != len(self.steps):
            raise ValueError(f"one answer per step: {len(self.steps)} steps, {len(accepts)}")
        self.accepts = dict(zip(self.steps, accepts, strict=True))
        self.policy = Policy(
            execution=spec.execution,
            step_timeout_s=spec.step_timeout_seconds,
            max_attempts=spec.max_attempts,
            compensation_max_attempts=spec.compensation_max_attempts,
        )
        self.initiator = Initiator(InitiatorPolicy.of(definition))
        self.initiator_name = spec.initiator.name
        self.types = {step: StepTypes(step) for step in self.steps}
        self.topics = {step: StepTopics(step) for step in self.steps}
        self.services = (ORCHESTRATOR_SERVICE, self.initiator_name, *self.steps)
        self.reader = {ORCHESTRATOR: ORCHESTRATOR_SERVICE}
        self.reader[ORCHESTRATOR_RESPONSE] = self.initiator_name
        self.step_of: dict[str, str] = {}
        for step, topics in self.topics.items():
            self.reader[topics.command] = self.reader[topics.compensation] = step
            self.reader[topics.success] = self.reader[topics.dlt] = ORCHESTRATOR_SERVICE
            for topic in (topics.command, topics.compensation, topics.success, topics.dlt):
                self.step_of[topic] = step
        self.writes = {ORCHESTRATOR_SERVICE: {ORCHESTRATOR_RESPONSE}}
        self.writes[self.initiator_name] = {ORCHESTRATOR}
        for step, topics in self.topics.items():
            self.writes[ORCHESTRATOR_SERVICE] |= {topics.command, topics.compensation}
            self.writes[step] = {topics.success, topics.dlt}
        # What a delivery to a service can write (the order-service writes on its timer only).
        self.replies = {service: frozenset(self.writes[service]) for service in self.services}
        self.replies[self.initiator_name] = frozenset()
        self.reads = {
            service: tuple(t for t, reader in self.reader.items() if reader == service)
            for service in self.services
        }
        self.stale_readers = (ORCHESTRATOR_SERVICE, self.initiator_name)
        # What a reader may be unable to read for good: a message with a payload of the order.
        self.poisonable = {ORCHESTRATOR: SAGA_START}
        self.poisonable |= {self.topics[s].command: self.types[s].command for s in self.steps}

    def describe(self) -> str:
        answers = ", ".join(f"{s} {'accepts' if y else 'rejects'}" for s, y in self.accepts.items())
        return f"{self.definition.name}, {self.execution}: {answers}"


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


class World:
    """One state of the simulated system; `apply` moves it on by one scheduler choice."""

    __slots__ = (
        "_owned",
        "faults_left",
        "handled",
        "inbox",
        "ledger",
        "m",
        "net",
        "now",
        "order",
        "outcomes",
        "poison",
        "response",
        "saga",
        "steps_taken",
        "trace",
    )

    def __init__(self, model: Model, max_faults: int, *, trace: bool = False) -> None:
        self.m = model
        self.now = 0.0
        self.faults_left = max_faults
        self.steps_taken = 0
        self.net: dict[str, tuple[Msg, ...]] = {}
        self.saga: SagaState | None = None  # the orchestrator's saga row
        self.response: Msg | None = None  # and the outcome it stored
        self.order = OrderRecord()
        self.outcomes: dict[str, Outcome | None] = {step: None for step in model.steps}
        self.ledger: dict[str, tuple[int, int]] = {step: (0, 0) for step in model.steps}
        self.inbox: dict[str, frozenset[str]] = {s: frozenset() for s in model.services}
        # What the orchestrator and the order-service read: what a stale copy can be made of.
        self.handled: tuple[tuple[str, Msg], ...] = ()
        self.poison: frozenset[str] = frozenset()
        self._owned = True  # the saga and the order are this world's own (copy on write)
        self.trace: list[str] | None = [] if trace else None
        # POST /orders: the order and its first start, in one transaction.
        self._initiator_send(model.initiator.place(self.order), "order placed")

    def clone(self) -> World:
        other = World.__new__(World)
        other.m = self.m
        other.now = self.now
        other.faults_left = self.faults_left
        other.steps_taken = self.steps_taken
        other.net = dict(self.net)
        other.saga = self.saga
        other.order = self.order
        other._owned = self._owned = False
        other.response = self.response
        other.outcomes = dict(self.outcomes)
        other.ledger = dict(self.ledger)
        other.inbox = dict(self.inbox)
        other.handled = self.handled
        other.poison = self.poison
        other.trace = None if self.trace is None else list(self.trace)
        return other

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

    def quiescent(self) -> bool:
        return not self.net and self.next_timer() is None

    def actions(self, faults: bool = True) -> list[Act]:
        """Every choice the scheduler has now (faults only if asked and the budget allows)."""
        acts = [Act("deliver", topic, channel[0].label) for topic, channel in self.net.items()]
        timer = self.next_timer() is not None
        if timer and not self.net:
            acts.append(Act("timer"))
        if not faults or self.faults_left <= 0:
            return acts
        if timer and self.net:
            acts.append(Act("delay"))
        for topic, channel in self.net.items():
            head = channel[0]
            if not self._poisoned(topic, head):
                acts.append(Act("dead_letter", topic, head.label))
                if self.m.poisonable.get(topic) == head.type:
                    acts.append(Act("poison", topic, head.label))
            seen: set[str] = set()
            for index, msg in enumerate(channel):
                if msg.label in seen:
                    continue
                seen.add(msg.label)
                acts.append(Act("drop", topic, msg.label))
                acts.append(Act("duplicate", topic, msg.label))
                if index > 0:
                    acts.append(Act("reorder", topic, msg.label))
        seen = set()
        for topic, msg in self.handled:
            if msg.id not in seen:
                seen.add(msg.id)
                acts.append(Act("stale", topic, msg.id))
        for service in self.m.services:
            if any(topic in self.net for topic in self.m.writes[service]):
                acts.append(Act("crash", "", service))
        return acts

    def persistent(self) -> list[Act]:
        """With no fault left: a persistent set of the deliveries (partial-order reduction).

        Deliveries to different services commute (each changes its reader's state and appends
        to channels with one writer each), and a timer fires only when nothing is in flight. So
        the deliveries to one service R are a persistent set if no delivery elsewhere can fill a
        channel of R that is empty now: the services that can act without R (those with
        messages waiting, and transitively those their replies reach) write to none of them.
        Exploring only that set still reaches every end state (Godefroid, 1996); the
        simulator's tests check it against the full search.
        """
        if not self.net:
            return self.actions(faults=False)
        waiting: dict[str, list[str]] = {}
        for topic in self.net:
            waiting.setdefault(self.m.reader[topic], []).append(topic)
        for reader in sorted(waiting, key=lambda r: len(waiting[r])):
            empty = {topic for topic in self.m.reads[reader] if topic not in self.net}
            active = [r for r in waiting if r != reader]
            seen = set(active)
            filled = False
            while active and not filled:
                writer = active.pop()
                for topic in self.m.replies[writer]:
                    if topic in empty:
                        filled = True
                        break
                    other = self.m.reader[topic]
                    if other != reader and other not in seen:
                        seen.add(other)
                        active.append(other)
            if not filled:
                return [Act("deliver", t, self.net[t][0].label) for t in waiting[reader]]
        return self.actions(faults=False)

    # -- moving on --------------------------------------------------------------------------------

    def apply(self, act: Act) -> Act | None:
        """Do what `act` says and return what it was (a timer that fires while messages are in
        flight is a delay; a delivery of a message behind its channel's head, a reorder); None
        (and nothing changes) if it is not possible now."""
        kind = act.kind
        if kind == "timer" and self.net:
            act = Act("delay")
        if kind in ("timer", "delay"):
            due = self.next_timer()
            if due is None:
                return None
            delayed = sum(len(channel) for channel in self.net.values())
            self._begin(act, f"{delayed} message(s) in flight, late" if delayed else "", due)
            self._fire()
        elif kind == "crash":
            service = act.label
            if service not in self.m.writes:
                return None
            self._begin(act, "")
            self._crash(service)
        elif kind == "stale":
            source = next(
                (m for t, m in self.handled if t == act.topic and m.id == act.label), None
            )
            if source is None:
                return None
            self._begin(act, "")
            self._enqueue(act.topic, source._replace(stale=True))
        else:
            index = self._find(act.topic, act.label)
            if index is None:
                return None
            channel = self.net[act.topic]
            msg = channel[index]
            if kind == "deliver" and index > 0:  # a script may name a message behind the head
                kind = "reorder"
                act = act._replace(kind=kind)
            if kind == "drop":
                self._begin(act, "")
                self._remove(act.topic, index)
            elif kind == "duplicate":
                self._begin(act, "")
                self._enqueue(act.topic, msg)
            elif kind == "poison":
                if self.m.poisonable.get(act.topic) != msg.type:
                    return None
                self._begin(act, f"{self.m.reader[act.topic]} can never read a {msg.type}")
                self.poison |= {msg.type}
                self._receive(act.topic, index, dead=True)
            elif kind in ("deliver", "reorder", "dead_letter"):
                self._begin(act, "")
                self._receive(act.topic, index, dead=kind == "dead_letter")
            else:
                raise ValueError(f"unknown action {act}")
        if act.fault:
            self.faults_left -= 1
        self.steps_taken += 1
        return act

    def _begin(self, act: Act, detail: str, at: float | None = None) -> None:
        if self.trace is not None:
            label = str(act).upper() if act.fault else str(act)
            now = self.now if at is None else max(at, self.now)
            self.trace.append(f"{self.steps_taken + 1:>3}  t={now:<6g} {label}")
            if detail:
                self._note(detail)

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{'':>16}{text}")

    def _find(self, topic: str, label: str) -> int | None:
        for index, msg in enumerate(self.net.get(topic, ())):
            if msg.label == label:
                return index
        return None

    def _remove(self, topic: str, index: int) -> Msg:
        channel = self.net[topic]
        msg = channel[index]
        self._set(topic, channel[:index] + channel[index + 1 :])
        return msg

    def _enqueue(self, topic: str, msg: Msg) -> None:
        if not msg.stale and msg.id in self.inbox[self.m.reader[topic]]:
            if self.trace is not None:
                self._note(f"{msg.id} on {topic}: its reader's inbox will drop it")
            return
        self.net[topic] = (*self.net.get(topic, ()), msg)

    def _poisoned(self, topic: str, msg: Msg) -> bool:
        return msg.type in self.poison and self.m.poisonable.get(topic) == msg.type

    def _receive(self, topic: str, index: int, *, dead: bool) -> None:
        msg = self._remove(topic, index)
        service = self.m.reader[topic]
        if not msg.stale and msg.id in self.inbox[service]:  # never queued; kept total
            self._note(f"{service}: {msg.id} is a duplicate, dropped by the inbox")
            return
        self.inbox[service] = self.inbox[service] | {msg.id}
        copies = tuple(m for m in self.net.get(topic, ()) if m.stale or m.id != msg.id)
        if copies != self.net.get(topic, ()):  # the inbox will drop the copies left
            self._set(topic, copies)
        if service in self.m.stale_readers and not msg.stale:
            self.handled = (*self.handled, (topic, msg))
        if dead or self._poisoned(topic, msg):
            outputs = self._dead_letter(service, topic, msg)
        elif service == ORCHESTRATOR_SERVICE:
            outputs = self._orchestrator(topic, msg)
        elif service == self.m.initiator_name:
            outputs = self._initiator(msg)
        else:
            outputs = self._participant(service, topic, msg)
        self._commit(service, outputs)

    def _set(self, topic: str, channel: tuple[Msg, ...]) -> None:
        if channel:
            self.net[topic] = channel
        else:
            self.net.pop(topic, None)

    def _commit(self, service: str, outputs: Outputs) -> None:
        if outputs and self.trace is not None:
            self._note(f"{service} sends {', '.join(m.id for _, m in outputs)}")
        for topic, msg in outputs:
            self._enqueue(topic, msg)
        if self.trace is not None:
            self._note(self.summary())

    def _crash(self, service: str) -> None:
        """Its uncommitted reads come again (the inbox drops them all: nothing to queue); its
        relay publishes again what is still in flight (it saw no acknowledgement)."""
        republished = [
            (topic, msg)
            for topic in sorted(self.m.writes[service])
            for msg in self.net.get(topic, ())
        ]
        for topic, msg in republished:
            self._enqueue(topic, msg)
        twice = ", ".join(m.label for _, m in republished) or "nothing"
        self._note(f"{service} restarts; what it read comes again and its inbox drops it")
        self._note(f"its relay publishes again {twice}")

    def _dead_letter(self, service: str, topic: str, msg: Msg) -> Outputs:
        if service in self.m.accepts:  # a step: to <step>.dlt, which the orchestrator reads
            dead = Msg(f"dlt:{msg.label}", DEAD_LETTER, service, msg.attempt, topic)
            if self.trace is not None:
                self._note(f"{service} dead-letters {msg.label} to {self.m.topics[service].dlt}")
            return [(self.m.topics[service].dlt, dead)]
        if self.trace is not None:
            self._note(f"{service} dead-letters {msg.label} to orchestrator.dlt (read by nobody)")
        return []

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
        self._commit(self.m.initiator_name, [(ORCHESTRATOR, msg)])

    # -- the services -------------------------------------------------------------------------

    def _orchestrator(self, topic: str, msg: Msg) -> Outputs:
        self._own()
        policy, now = self.m.policy, self.now
        if topic == ORCHESTRATOR:
            new = self.saga is None
            if self.saga is None:
                self.saga = SagaState.new(self.m.steps)
            engine = Engine(policy, self.saga)
            if msg.type == SAGA_CANCEL:
                actions = engine.cancel(msg.detail or "cancelled", now)
                return self._orchestrator_out(actions, answering=msg)
            return self._orchestrator_out(engine.start(now) if new else engine.repeated_start())
        if self.saga is None:
            self._note(f"orchestrator: no saga for {msg.id}: dead-lettered to orchestrator.dlt")
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
                out.append((ORCHESTRATOR_RESPONSE, self.response))
            elif isinstance(action, ResendOutcome) and self.response is not None:
                response = self.response
                if action.fresh:  # a new message: named after what it answers
                    answer = "" if answering is None else answering.id
                    response = response._replace(id=f"{response.id}@{answer}")
                out.append((ORCHESTRATOR_RESPONSE, response))
        return out

    def _participant(self, step: str, topic: str, msg: Msg) -> Outputs:
        topics, types = self.m.topics[step], self.m.types[step]
        outcome = self.outcomes[step]
        attempt = msg.attempt
        if topic == topics.command:
            decision = on_command(outcome)
            if isinstance(decision, Refuse):
                refusal = Msg(f"{types.failed}:refused#{attempt}", types.failed, step, attempt)
                return [(topics.dlt, refusal._replace(detail=decision.reason))]
            if isinstance(decision, Repeat):
                reply: Msg = decision.reply
                return [(topics.success if reply.type == types.done else topics.dlt, reply)]
            accepted = self.m.accepts[step]
            if accepted:
                applied, undone = self.ledger[step]
                self.ledger[step] = (applied + 1, undone)
                reply = Msg(f"{types.done}#{attempt}", types.done, step, attempt)
            else:
                reply = Msg(f"{types.failed}#{attempt}", types.failed, step, attempt, "rejected")
            self.outcomes[step] = Outcome(applied_status(accepted), reply)
            return [(topics.success if accepted else topics.dlt, reply)]
        choice = on_compensation(outcome)
        if isinstance(choice, Repeat):
            return [(topics.success, choice.reply)]
        if choice.tombstone or outcome is None:
            outcome = Outcome(OutcomeStatus.TOMBSTONE)
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

    # -- the invariants -----------------------------------------------------------------------

    def violations(self, *, quiescent: bool) -> list[str]:
        """The invariants of DESIGN.md broken in this state (all of them once quiescent)."""
        found = []
        for step, (applied, undone) in self.ledger.items():
            if applied > 1:
                found.append(f"effect twice: {step} applied {applied} times")
            if undone > 1:
                found.append(f"effect twice: {step} undone {undone} times")
        if not quiescent:
            return found
        order, saga = self.order.status, self.saga
        if order is OrderStatus.PENDING:
            found.append("not terminal: the order is still PENDING")
        if saga is not None and not saga.status.terminal:
            found.append(f"not terminal: the saga is still {saga.status}")
        completed = saga is not None and saga.status is SagaStatus.COMPLETED
        if (order is OrderStatus.APPROVED) != completed:
            status = "none" if saga is None else saga.status
            found.append(f"APPROVED ⇔ COMPLETED broken: order {order}, saga {status}")
        for step, (applied, undone) in self.ledger.items():
            standing = applied - undone
            if standing > 0 and order is not OrderStatus.APPROVED:
                found.append(f"effect standing without an approved order: {step} ({order})")
            if order is OrderStatus.APPROVED and standing != 1:
                found.append(f"approved order without its {step} effect")
        return found

    def summary(self) -> str:
        saga = "no saga"
        if self.saga is not None:
            steps = " ".join(f"{n}:{s.status}/{s.attempt}" for n, s in self.saga.steps.items())
            saga = f"saga {self.saga.status} [{steps}]"
        effects = " ".join(f"{s}:+{a}-{u}" for s, (a, u) in self.ledger.items())
        return f"= {saga}; order {self.order.status}; effects {effects}"

    # -- identity of a state ------------------------------------------------------------------

    def key(self) -> tuple[object, ...]:
        """What decides the future: states with one key have the same schedules ahead.

        Times are relative to now (absolute time decides nothing); reasons are left out (they
        decide nothing either). What a stale copy can be made of is the inbox (by id).
        """
        now = self.now
        saga: object = None
        if self.saga is not None:
            saga = (
                self.saga.status,
                tuple(
                    (s.status, s.attempt, None if s.deadline is None else s.deadline - now)
                    for s in self.saga.steps.values()
                ),
            )
        order = self.order
        resend = None if order.resend_at is None else order.resend_at - now
        net = tuple(
            sorted((topic, tuple(m.label for m in channel)) for topic, channel in self.net.items())
        )
        outcomes = tuple(
            None
            if o is None
            else (
                o.status,
                None if o.reply is None else o.reply.id,
                None if o.compensation_reply is None else o.compensation_reply.id,
            )
            for o in self.outcomes.values()
        )
        key: tuple[object, ...] = (
            saga,
            None if self.response is None else self.response.id,
            (order.status, order.start_attempt, order.cancel_attempt, resend),
            net,
            outcomes,
            tuple(self.ledger.values()),
            tuple(self.inbox.values()),
            self.poison,
            max(self.faults_left, 0),
        )
        return key
