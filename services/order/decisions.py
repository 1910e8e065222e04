"""The initiator's decisions, pure: start a saga, re-send its start, record its outcome.

An order is PENDING from the moment it is written with its `saga.start`; the start is re-sent
while no outcome came, with backoff; the first outcome decides the order (APPROVED for
`saga.completed`, REJECTED otherwise) and every later one is a repeat. `services.order.handler`
runs these decisions in the order-service's transactions; `sagaline simulate` runs the same ones
over a simulated network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from services.common.backoff import attempt_timeout_s
from services.common.definition import SagaDefinition
from services.common.messages import SAGA_COMPLETED


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class StartRecord(Protocol):
    """What the initiator keeps of an order (the `orders` row, or the simulator's)."""

    status: OrderStatus
    start_attempt: int


@dataclass(frozen=True)
class SendStart:
    attempt: int


@dataclass(frozen=True)
class Decide:
    status: OrderStatus
    reason: str | None


@dataclass(frozen=True)
class Send:
    """A message to send, and how long to wait for an outcome before the next decision."""

    message: SendStart
    wait_s: float


@dataclass(frozen=True)
class InitiatorPolicy:
    start_timeout_s: float

    @classmethod
    def of(
        cls, definition: SagaDefinition, start_timeout_s: float | None = None
    ) -> InitiatorPolicy:
        """By default a start waits as long as every step's first attempt, and one more."""
        spec = definition.spec
        return cls(start_timeout_s or spec.step_timeout_seconds * (len(spec.steps) + 1))

    def wait_s(self, attempt: int) -> float:
        return attempt_timeout_s(self.start_timeout_s, attempt)


class Initiator:
    def __init__(self, policy: InitiatorPolicy) -> None:
        self.policy = policy

    def place(self, order: StartRecord) -> Send:
        """A new order: PENDING, its first start."""
        order.status, order.start_attempt = OrderStatus.PENDING, 1
        return Send(SendStart(1), self.policy.wait_s(1))

    def timed_out(self, order: StartRecord) -> Send | None:
        """No outcome before the deadline: re-send the start."""
        if order.status is not OrderStatus.PENDING:
            return None
        order.start_attempt += 1
        return Send(SendStart(order.start_attempt), self.policy.wait_s(order.start_attempt))

    def answered(self, order: StartRecord, outcome_type: str, reason: str | None) -> Decide | None:
        """The saga's outcome: the first decides the order, a later one is a repeat (None)."""
        if order.status is not OrderStatus.PENDING:
            return None
        approved = outcome_type == SAGA_COMPLETED
        order.status = OrderStatus.APPROVED if approved else OrderStatus.REJECTED
        return Decide(order.status, None if approved else (reason or outcome_type))
