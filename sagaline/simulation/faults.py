"""The scheduler's choices (`Act`), the faults among them, and what each fault does.

Free choices: `deliver` a channel's head, fire the `timer` when nothing is in flight. Faults,
each counted against the run's budget: `drop` any message in flight; `duplicate` one (a copy at
its channel's tail: the relay published it twice); `stale` (a copy of a message its reader
handled, delivered after the inbox forgot the id); `reorder` (deliver a message that is not its
channel's head); `dead_letter` (the reader cannot take the head: it is dead-lettered, its id
claimed; a step's dead letters go to `<step>.dlt`, which the orchestrator reads); `poison` (the
reader can never take that message: a start or a command whose payload it cannot read, so every
copy and every re-send is dead-lettered from then on); `delay` (a timer fires while messages are
in flight: they all arrive after the timeout); `crash` (a service loses its uncommitted work:
what it read since its last offset commit is delivered again, which its inbox drops, and its
relay publishes again what it had not seen acknowledged: every message of it still in flight).
With the inbox claimed in the transaction that applies the effect, a crash can only duplicate:
the simulation shows it rather than assumes it. A calling step's worker adds its own
(`call_timeout`, `worker_crash`: simulation/calls.py).

`stale` copies are made of what the orchestrator and the order-service read: a participant's
decisions look at its outcome record, never at message ids, so a stale copy of a command or a
compensation is a re-send by another name, which the timers already make.

`Faults` is the third layer of the `World`: the budget left, what stale copies can be made of,
the message types poisoned, and every choice open now (`actions`).
"""

from __future__ import annotations

from typing import NamedTuple

from sagaline.simulation.calls import WORKER_FAULTS, Calls
from sagaline.simulation.model import Model
from sagaline.simulation.network import DEAD_LETTER, Msg, Outputs

FREE = frozenset({"deliver", "timer", "call", "record", "partner"})
FAULT_KINDS = (
    "drop",
    "duplicate",
    "stale",
    "reorder",
    "dead_letter",
    "poison",
    "delay",
    "crash",
    *WORKER_FAULTS,
)


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


class Faults(Calls):
    """The fault budget and the state faults act on; every choice the scheduler has."""

    __slots__ = ("faults_left", "handled", "poison")

    def __init__(self, model: Model, max_faults: int, *, trace: bool) -> None:
        super().__init__(model, trace=trace)
        self.faults_left = max_faults
        # What the orchestrator and the order-service read: what a stale copy can be made of.
        self.handled: tuple[tuple[str, Msg], ...] = ()
        self.poison: frozenset[str] = frozenset()

    def actions(self, faults: bool = True) -> list[Act]:
        """Every choice the scheduler has now (faults only if asked and the budget allows)."""
        acts = [Act("deliver", topic, channel[0].label) for topic, channel in self.net.items()]
        allowed = faults and self.faults_left > 0
        for step in self.m.calling:  # a calling step's worker and partner (calls.py)
            acts += [Act(kind, step) for kind, _ in self.work(step)]
        busy = self.busy()
        timer = self.next_timer() is not None
        if timer and not busy:
            acts.append(Act("timer"))
        if not allowed:
            return acts
        for step in self.m.calling:
            acts += [Act(k, s) for k, s in self.work(step, faults=True) if k in WORKER_FAULTS]
        if timer and busy:
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

    def _poisoned(self, topic: str, msg: Msg) -> bool:
        return msg.type in self.poison and self.m.poisonable.get(topic) == msg.type

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
            self._note(
                f"{service} dead-letters {msg.label} to {self.m.saga_topics.dlt} (read by nobody)"
            )
        return []
