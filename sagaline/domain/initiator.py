"""The initiator's decisions, pure: start a saga, re-send its start, give up, record its outcome.

An order is PENDING from the moment it is written with its `saga.start`; the start is re-sent
while no outcome came, with backoff, `maxAttempts` times in all. Then the order-service gives up
the start, but not the order's decision: only the orchestrator knows whether the saga started
(its answer may be what was lost), so deciding alone could approve an order whose saga never
completed, or reject one whose saga did. It sends `saga.cancel` instead, re-sent with backoff
until answered: the orchestrator answers a cancel in every state, with the saga's original
outcome if it ended, by compensating it if it runs, and for a saga it never started by recording
it compensated (a tombstone that answers a late start with that outcome). A cancel carries no
payload the orchestrator must read, so what made it dead-letter every start cannot refuse it.

The first outcome decides the order (APPROVED for `saga.completed`, REJECTED otherwise) and
every later one is a repeat. `sagaline.services.order.handler` runs these decisions in the
order-service's transactions; `sagaline simulate` runs the same ones over a simulated network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sagaline.domain.backoff import attempt_timeout_s
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.messages import SAGA_COMPLETED

CANCEL_REASON = "cancelled: the order-service gave up its start after {attempts} attempts"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class StartRecord(Protocol):
    """What the initiator keeps of an order (the `orders` row, or the simulator's)."""

    status: OrderStatus
    start_attempt: int
    cancel_attempt: int  # 0 while the start is not given up


@dataclass(frozen=True)
class SendStart:
    attempt: int


@dataclass(frozen=True)
class SendCancel:
    attempt: int
    reason: str


@dataclass(frozen=True)
class Decide:
    status: OrderStatus
    reason: str | None


@dataclass(frozen=True)
class Send:
    """A message to send, and how long to wait for an outcome before the next decision."""

    message: SendStart | SendCancel
    wait_s: float


@dataclass(frozen=True)
class InitiatorPolicy:
    start_timeout_s: float
    max_start_attempts: int

    @classmethod
    def of(
        cls, definition: SagaDefinition, start_timeout_s: float | None = None
    ) -> InitiatorPolicy:
        """By default a start waits as long as every step's first attempt (each its own
        time-out), and one more of the Saga's, and is sent as many times as the Saga's
        `maxAttempts`."""
        spec = definition.spec
        steps_s = sum(timing.timeout_s for timing in spec.timings().values())
        timeout = start_timeout_s or steps_s + spec.step_timeout_seconds
        return cls(timeout, spec.max_attempts)

    def wait_s(self, attempt: int) -> float:
        return attempt_timeout_s(self.start_timeout_s, attempt)


class Initiator:
    def __init__(self, policy: InitiatorPolicy) -> None:
        self.policy = policy

    def place(self, order: StartRecord) -> Send:
        """A new order: PENDING, its first start."""
        order.status, order.start_attempt, order.cancel_attempt = OrderStatus.PENDING, 1, 0
        return Send(SendStart(1), self.policy.wait_s(1))

    def timed_out(self, order: StartRecord) -> Send | None:
        """No outcome before the deadline: re-send the start, or, once its attempts are spent,
        ask the orchestrator to cancel (and ask again until it answers)."""
        if order.status is not OrderStatus.PENDING:
            return None
        if order.cancel_attempt == 0 and order.start_attempt < self.policy.max_start_attempts:
            order.start_attempt += 1
            return Send(SendStart(order.start_attempt), self.policy.wait_s(order.start_attempt))
        order.cancel_attempt += 1
        reason = CANCEL_REASON.format(attempts=order.start_attempt)
        return Send(
            SendCancel(order.cancel_attempt, reason), self.policy.wait_s(order.cancel_attempt)
        )

    def answered(self, order: StartRecord, outcome_type: str, reason: str | None) -> Decide | None:
        """The saga's outcome: the first decides the order, a later one is a repeat (None)."""
        if order.status is not OrderStatus.PENDING:
            return None
        approved = outcome_type == SAGA_COMPLETED
        order.status = OrderStatus.APPROVED if approved else OrderStatus.REJECTED
        return Decide(order.status, None if approved else (reason or outcome_type))
