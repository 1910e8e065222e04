"""The simulated world of one saga: its services, an in-memory network, a clock and faults.

The services run the project's own decisions; what is simulated is what the database code and
Kafka do around them, at the level of the delivery rules of docs/design.md ("Delivery rules"). A
`World` is one state of the system, built in layers, each in its module:

- `network.py` (`Network`): messages named by what they are, one FIFO channel per topic, the
  inboxes (a copy its reader's inbox holds is dropped at once);
- `actors.py` (`Actors`): the orchestrator, the steps and the order-service, their records and
  their timers (time moves only when a timer fires);
- `faults.py` (`Faults`): the scheduler's choices (`Act`), the faults and their budget;
- here (`World`): one scheduler choice applied (`apply`), a delivery as one transaction at its
  reader (the inbox drops an id it has seen, else the decision runs and its messages go to the
  outbox: here, straight onto the network), the invariants (`violations`) and the identity of a
  state (`key`) the search hashes. What a run does not change is the `Model` (model.py).
"""

from __future__ import annotations

from sagaline.domain.engine import SagaStatus
from sagaline.domain.initiator import OrderStatus
from sagaline.simulation.calls import WORKER_KINDS
from sagaline.simulation.faults import Act, Faults
from sagaline.simulation.model import ORCHESTRATOR_SERVICE, Model


class World(Faults):
    """One state of the simulated system; `apply` moves it on by one scheduler choice."""

    __slots__ = ("steps_taken",)

    def __init__(self, model: Model, max_faults: int, *, trace: bool = False) -> None:
        super().__init__(model, max_faults, trace=trace)
        self.steps_taken = 0
        # POST /orders: the order and its first start, in one transaction.
        self._initiator_send(model.initiator.place(self.order), "order placed")

    def clone(self) -> World:
        """Every layer's state, copied here in one place (the search clones at every step)."""
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
        other.owed = dict(self.owed)
        other.tries = dict(self.tries)
        other.late = dict(self.late)
        other.books = dict(self.books)
        other.inbox = dict(self.inbox)
        other.handled = self.handled
        other.poison = self.poison
        other.trace = None if self.trace is None else list(self.trace)
        return other

    # -- what can happen next ---------------------------------------------------------------------

    def quiescent(self) -> bool:
        return not self.busy() and self.next_timer() is None

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
        pending = {topic: [Act("deliver", topic, ch[0].label)] for topic, ch in self.net.items()}
        for step, work in self.m.work.items():  # a calling step's worker: its own channel
            if acts := [Act(kind, step) for kind, _ in self.work(step)]:
                pending[work] = acts
        if not pending:
            return self.actions(faults=False)
        waiting: dict[str, list[str]] = {}
        for topic in pending:
            waiting.setdefault(self.m.reader[topic], []).append(topic)
        for reader in sorted(waiting, key=lambda r: len(waiting[r])):
            empty = {topic for topic in self.m.reads[reader] if topic not in pending}
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
                return [act for topic in waiting[reader] for act in pending[topic]]
        return self.actions(faults=False)

    # -- moving on --------------------------------------------------------------------------------

    def apply(self, act: Act) -> Act | None:
        """Do what `act` says and return what it was (a timer that fires while messages are in
        flight is a delay; a delivery of a message behind its channel's head, a reorder); None
        (and nothing changes) if it is not possible now."""
        kind = act.kind
        if kind == "timer" and self.busy():
            act = Act("delay")
        if kind in WORKER_KINDS:
            step = act.topic
            if step not in self.m.calling or (kind, step) not in self.work(step, faults=True):
                return None
            self._begin(act, "")
            self._work(kind, step)
        elif kind in ("timer", "delay"):
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

    # -- the invariants -----------------------------------------------------------------------

    def violations(self, *, quiescent: bool) -> list[str]:
        """The invariants (docs/design.md, "Invariants") broken in this state (all of them once
        quiescent)."""
        found = []
        for step, (applied, undone) in self.ledger.items():
            if applied > 1:
                found.append(f"effect twice: {step} applied {applied} times")
            if undone > 1:
                found.append(f"effect twice: {step} undone {undone} times")
        found += self.call_violations()
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
            tuple(self.owed.values()),
            tuple(self.tries.values()),
            tuple(self.late.values()),
            tuple(self.books.values()),
            tuple(self.inbox.values()),
            self.poison,
            max(self.faults_left, 0),
        )
        return key
