"""The order service's side of the saga: start it, re-send the start, record the outcome.

The decisions are pure (`sagaline.domain.initiator`); this module keeps the orders and their
re-send deadlines, and turns what the decisions send into outbox messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.delivery import outbox
from sagaline.delivery.consumer import Incoming
from sagaline.delivery.errors import Unprocessable
from sagaline.delivery.group_commit import GroupCommitter
from sagaline.domain.clock import seconds_from_now, utcnow
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.envelope import Envelope
from sagaline.domain.initiator import Initiator, InitiatorPolicy, Send, SendCancel, SendStart
from sagaline.domain.messages import (
    SAGA_CANCEL,
    SAGA_OUTCOMES,
    SAGA_START,
)
from sagaline.services.order.rows import (
    DECISION_COLUMNS,
    DUE,
    ORDERS,
    RESEND_COLUMNS,
    OrderRow,
    StartRecordOf,
)
from sagaline.services.order.waiters import DecisionWaiters
from sagaline.storage.db import (
    Database,
    after_commit,
    append,
    batch_cache,
    select_locked_into,
    update_later,
)
from sagaline.telemetry import tracing
from sagaline.telemetry.metrics import RESENDS

log = logging.getLogger(__name__)

MAX_ATTEMPT = 1000  # the envelope's bound; re-sends go on, numbered no higher


class OrderSagaInitiator:
    def __init__(self, definition: SagaDefinition, start_timeout_s: float | None = None) -> None:
        self.definition = definition
        self.name = definition.spec.initiator.name
        self.saga_topics = definition.saga_topics
        self.topics = [self.saga_topics.response]
        self.initiator = Initiator(InitiatorPolicy.of(definition, start_timeout_s))
        self.start_timeout_s = self.initiator.policy.start_timeout_s
        self._committer: GroupCommitter | None = None
        self.waiters = DecisionWaiters()

    def committer(self, db: Database) -> GroupCommitter:
        """Orders placed concurrently commit together (each still with its own saga.start)."""
        if self._committer is None:
            self._committer = GroupCommitter(db)
        return self._committer

    def start(self, session: AsyncSession, order: OrderRow) -> None:
        """Write the order (a `rows.new_order`) and its saga.start in the caller's
        transaction."""
        order["traceparent"] = tracing.current_traceparent()
        append(session, ORDERS, [order])  # written as it is when the transaction ends
        self._send(session, order, self.initiator.place(StartRecordOf(order)))
        after_commit(session, lambda: self.waiters.placed(order))

    def _send(self, session: AsyncSession, order: OrderRow, send: Send) -> None:
        order["resend_at"] = seconds_from_now(send.wait_s)
        outbox.send(session, self.saga_topics.orchestrator, [self._message(order, send.message)])

    def _message(self, order: OrderRow, message: SendStart | SendCancel) -> Envelope:
        if isinstance(message, SendCancel):
            return Envelope(
                type=SAGA_CANCEL,
                saga_id=order["id"],
                saga=self.definition.name,
                attempt=min(message.attempt, MAX_ATTEMPT),
                payload={"reason": message.reason},
            )
        return Envelope(
            type=SAGA_START,
            saga_id=order["id"],
            saga=self.definition.name,
            attempt=min(message.attempt, MAX_ATTEMPT),
            payload={
                "order_id": str(order["id"]),
                "customer_id": order["customer_id"],
                "items": order["items"],
                "total_cents": order["total_cents"],
            },
        )

    # -- Handler protocol -------------------------------------------------------------------------

    def dead_letter_topic(self, source_topic: str) -> str:
        return self.saga_topics.dlt

    def reads_dead_letters(self, topic: str) -> bool:
        return False

    def check(self, topic: str, envelope: Envelope) -> None:
        if envelope.type not in SAGA_OUTCOMES:
            raise Unprocessable(f"unexpected type {envelope.type!r} on {topic}")
        if envelope.saga != self.definition.name:
            raise Unprocessable(f"unknown saga {envelope.saga!r}")

    async def prepare(self, session: AsyncSession, batch: Sequence[Incoming]) -> None:
        ids = {m.envelope.saga_id for m in batch if m.envelope is not None}
        await select_locked_into(session, ORDERS, "id", ids, batch_cache(session, "orders"))

    async def handle(self, session: AsyncSession, message: Incoming) -> None:
        envelope = message.envelope
        assert envelope is not None
        orders = batch_cache(session, "orders")
        await select_locked_into(session, ORDERS, "id", {envelope.saga_id}, orders)
        order: OrderRow | None = orders[envelope.saga_id]
        if order is None:
            raise Unprocessable(f"no order {envelope.saga_id}")
        reason = envelope.payload.get("reason")
        decision = self.initiator.answered(
            StartRecordOf(order), envelope.type, str(reason) if reason else None
        )
        if decision is None:
            return  # a repeated outcome
        order.update(
            reason=decision.reason[:1000] if decision.reason else None,
            decided_at=utcnow(),
            resend_at=None,
        )
        update_later(session, ORDERS, order, key=("id",), columns=DECISION_COLUMNS)
        after_commit(session, lambda: self.waiters.decided(order))

    # -- the clock --------------------------------------------------------------------------------

    async def tick(self, db: Database, limit: int = 200) -> int:
        """Re-send saga.start for orders still pending past their deadline (rule 4), or, once
        its attempts are spent, saga.cancel."""
        async with db.transaction() as session:
            result = await session.execute(DUE, {"now": utcnow(), "limit": limit})
            due = [dict(row) for row in result.mappings()]
            for order in due:
                update_later(session, ORDERS, order, key=("id",), columns=RESEND_COLUMNS)
                send = self.initiator.timed_out(StartRecordOf(order))
                if send is None:
                    order["resend_at"] = None
                    continue
                with tracing.span_in(order["traceparent"], "order re-send"):
                    self._send(session, order, send)
                sent = SAGA_CANCEL if isinstance(send.message, SendCancel) else SAGA_START
                RESENDS.labels(self.name, sent).inc()
                if isinstance(send.message, SendCancel) and send.message.attempt == 1:
                    log.warning(
                        "order %s: %s; asking the orchestrator to cancel",
                        order["id"],
                        send.message.reason,
                    )
            return len(due)
