"""The simulated network: messages named by what they are, one FIFO channel per topic, and each
service's inbox (the ids it has taken).

- A message (`Msg`) is named by what it is (`payment.charge#2`, the reply a participant stored,
  the outcome of the saga), as the real ids are fixed where the real code stores a message and
  fresh where it makes a new one, so states reached by different schedules compare equal.
- The network is one FIFO channel per topic, read by one service (one saga's messages of one
  topic stay in order on one partition). Delivering a channel's head is free, and which channel
  is the scheduler's choice: every interleaving across topics is a schedule.
- A copy of a message whose id its reader's inbox holds would be dropped on arrival and change
  nothing: it is dropped at once (so states that differ only by such copies are one).

`Network` is the first layer of the `World` (simulation/world.py): the channels, the inboxes
and the trace, with what the services and the faults do to them.
"""

from __future__ import annotations

from typing import NamedTuple

from sagaline.simulation.model import Model

DEAD_LETTER = "dead-letter"


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


Outputs = list[tuple[str, Msg]]  # what a transaction sends: (topic, message)


class Network:
    """The channels (`net`: topic → messages in flight, in order), the inboxes (service → ids
    taken) and the trace of a run (when asked)."""

    __slots__ = ("inbox", "m", "net", "trace")

    def __init__(self, model: Model, *, trace: bool) -> None:
        self.m = model
        self.net: dict[str, tuple[Msg, ...]] = {}
        self.inbox: dict[str, frozenset[str]] = {s: frozenset() for s in model.services}
        self.trace: list[str] | None = [] if trace else None

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

    def _set(self, topic: str, channel: tuple[Msg, ...]) -> None:
        if channel:
            self.net[topic] = channel
        else:
            self.net.pop(topic, None)
