"""The order service's side of the saga: start it, re-send the start, record the outcome."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.common import outbox
from services.common.backoff import attempt_timeout_s
from services.common.clock import seconds_from_now, utcnow
from services.common.consumer import Incoming
from services.common.db import Database, after_commit, batch_cache, load_locked
from services.common.definition import SagaDefinition
from services.common.envelope import Envelope
from services.common.errors import Unprocessable
from services.common.group_commit import GroupCommitter
from services.common.messages import (
    ORCHESTRATOR,
    ORCHESTRATOR_DLT,
    ORCHESTRATOR_RESPONSE,
    SAGA_COMPLETED,
    SAGA_OUTCOMES,
    SAGA_START,
)
from services.common.metrics import RESENDS
from services.order.models import Order, OrderStatus
from services.order.waiters import DecisionWaiters

MAX_ATTEMPT = 1000  # the envelope's bound; re-sends go on, numbered no higher


class OrderSagaInitiator:
    def __init__(self, definition: SagaDefinition, start_timeout_s: float | None = None) -> None:
        self.definition = definition
        self.name = definition.spec.initiator.name
        self.topics = [ORCHESTRATOR_RESPONSE]
        spec = definition.spec
        self.start_timeout_s = start_timeout_s or spec.step_timeout_seconds * (len(spec.steps) + 1)
        self._committer: GroupCommitter | None = None
        self.waiters = DecisionWaiters()

    def committer(self, db: Database) -> GroupCommitter:
        """Orders placed concurrently commit together (each still with its own saga.start)."""
        if self._committer is None:
            self._committer = GroupCommitter(db)
        return self._committer

    def resend_at(self, attempt: int) -> Any:
        return seconds_from_now(attempt_timeout_s(self.start_timeout_s, attempt))

    def start(self, session: AsyncSession, order: Order) -> None:
        """Write the order and its saga.start in the caller's transaction."""
        order.resend_at = self.resend_at(order.start_attempt)
        session.add(order)
        outbox.send(session, ORCHESTRATOR, [self._start_message(order)])

    def _start_message(self, order: Order) -> Envelope:
        return Envelope(
            type=SAGA_START,
            saga_id=order.id,
            saga=self.definition.name,
            attempt=min(order.start_attempt, MAX_ATTEMPT),
            payload={
                "order_id": str(order.id),
                "customer_id": order.customer_id,
                "items": order.items,
                "total_cents": order.total_cents,
            },
        )

    # -- Handler protocol -------------------------------------------------------------------------

    def dead_letter_topic(self, source_topic: str) -> str:
        return ORCHESTRATOR_DLT

    def reads_dead_letters(self, topic: str) -> bool:
        return False

    def check(self, topic: str, envelope: Envelope) -> None:
        if envelope.type not in SAGA_OUTCOMES:
            raise Unprocessable(f"unexpected type {envelope.type!r} on {topic}")
        if envelope.saga != self.definition.name:
            raise Unprocessable(f"unknown saga {envelope.saga!r}")

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        ids = {m.envelope.saga_id for m in batch if m.envelope is not None}
        await load_locked(session, Order, Order.id, ids, batch_cache(session, "orders"))

    async def handle(self, session: AsyncSession, message: Incoming) -> None:
        envelope = message.envelope
        assert envelope is not None
        orders = batch_cache(session, "orders")
        await load_locked(session, Order, Order.id, {envelope.saga_id}, orders)
        order: Order | None = orders[envelope.saga_id]
        if order is None:
            raise Unprocessable(f"no order {envelope.saga_id}")
        if order.status is not OrderStatus.PENDING:
            return  # a repeated outcome
        approved = envelope.type == SAGA_COMPLETED
        order.status = OrderStatus.APPROVED if approved else OrderStatus.REJECTED
        reason = None if approved else str(envelope.payload.get("reason") or envelope.type)
        order.reason = reason[:1000] if reason else None
        order.decided_at = utcnow()
        order.resend_at = None
        after_commit(session, lambda: self.waiters.decided(order.id))

    # -- the clock --------------------------------------------------------------------------------

    async def tick(self, db: Database, limit: int = 200) -> int:
        """Re-send saga.start for orders still pending past their deadline (rule 4)."""
        async with db.transaction() as session:
            due = (
                await session.scalars(
                    select(Order)
                    .where(
                        col(Order.status) == OrderStatus.PENDING,
                        col(Order.resend_at) <= utcnow(),
                    )
                    .order_by(col(Order.resend_at))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for order in due:
                order.start_attempt += 1
                order.resend_at = self.resend_at(order.start_attempt)
                outbox.send(session, ORCHESTRATOR, [self._start_message(order)])
                RESENDS.labels(self.name, SAGA_START).inc()
            return len(due)
