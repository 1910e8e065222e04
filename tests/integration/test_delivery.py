"""Delivery rules exercised on the wire: duplicates, re-sends, compensation before command.

Messages are produced straight to the topics, as a broker that duplicates or reorders would
deliver them, and the replies are read back from the reply topics.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sagaline.domain.envelope import Envelope, header_value
from sagaline.domain.messages import StepTopics, StepTypes
from tests.integration.support import Api, Kafka, eventually, of_saga


async def step_command(api: Api, step: str, saga_id: uuid.UUID) -> tuple[Envelope, Any]:
    """A command for `step` against fresh data, and a probe of the effect it has."""
    if step == "payment":
        customer = await api.account("100.00")
        payload = {"customer_id": customer, "total_cents": 1500}

        async def effect() -> Any:
            return await api.balance(customer)
    else:
        product = await api.product(10)
        payload = {"items": [{"product_id": product, "quantity": 3}]}

        async def effect() -> Any:
            return await api.stock(product)

    command = Envelope(
        type=StepTypes(step).command, saga_id=saga_id, saga="order", step=step, payload=payload
    )
    return command, effect


async def replay(kafka: Kafka, saga_id: str, messages: list[tuple[str, str]]) -> None:
    """Deliver each (topic, type) message of the saga again: once as a duplicate (same id), once
    as a re-send (new id)."""
    for topic, type_ in messages:
        original = Envelope.decode((await kafka.read(topic, of_saga(saga_id, type_)))[0].value)
        await kafka.send_envelope(topic, original)
        await kafka.send_envelope(topic, original.model_copy(update={"id": uuid.uuid4()}))


def ids(records: list[Any]) -> list[str]:
    return [str(Envelope.decode(r.value).id) for r in records]


@pytest.mark.parametrize("step", ["payment", "stock"])
async def test_command_twice_and_resent_has_one_effect_and_the_original_reply(
    api: Api, kafka: Kafka, step: str
) -> None:
    saga_id = uuid.uuid4()
    command, effect = await step_command(api, step, saga_id)
    before = await effect()
    types, topics = StepTypes(step), StepTopics("order", step)

    await kafka.send_envelope(topics.command, command)
    await kafka.send_envelope(topics.command, command)  # the same message, delivered twice
    first = await kafka.read(topics.success, of_saga(saga_id, types.done))
    assert len(first) == 1, "a duplicate must do nothing new"
    after = await effect()
    assert after != before

    resent = command.model_copy(update={"id": uuid.uuid4(), "attempt": 2})
    await kafka.send_envelope(topics.command, resent)  # a re-send after a timeout
    replies = await kafka.read(topics.success, of_saga(saga_id, types.done), count=2)
    assert len(replies) == 2
    assert ids(replies)[0] == ids(replies)[1], "a re-send gets the ORIGINAL reply again"
    assert await effect() == after, "and no second effect"


@pytest.mark.parametrize("step", ["payment", "stock"])
async def test_compensation_twice_undoes_once(api: Api, kafka: Kafka, step: str) -> None:
    saga_id = uuid.uuid4()
    command, effect = await step_command(api, step, saga_id)
    before = await effect()
    types, topics = StepTypes(step), StepTopics("order", step)
    await kafka.send_envelope(topics.command, command)
    await kafka.read(topics.success, of_saga(saga_id, types.done))

    compensate = Envelope(type=types.compensate, saga_id=saga_id, saga="order", step=step)
    await kafka.send_envelope(topics.compensation, compensate)
    await kafka.send_envelope(topics.compensation, compensate)
    again = compensate.model_copy(update={"id": uuid.uuid4(), "attempt": 2})
    await kafka.send_envelope(topics.compensation, again)

    acks = await kafka.read(topics.success, of_saga(saga_id, types.compensated), count=2)
    assert len(acks) == 2, "the duplicate does nothing; the re-send is answered"
    assert ids(acks)[0] == ids(acks)[1]
    assert await effect() == before, "undone exactly once"


@pytest.mark.parametrize("step", ["payment", "stock"])
async def test_compensation_before_command_leaves_a_tombstone(
    api: Api, kafka: Kafka, step: str
) -> None:
    saga_id = uuid.uuid4()
    command, effect = await step_command(api, step, saga_id)
    before = await effect()
    types, topics = StepTypes(step), StepTopics("order", step)

    compensate = Envelope(type=types.compensate, saga_id=saga_id, saga="order", step=step)
    await kafka.send_envelope(topics.compensation, compensate)
    ack = await kafka.read(topics.success, of_saga(saga_id, types.compensated))
    assert "nothing to undo" in Envelope.decode(ack[0].value).payload["effect"]

    await kafka.send_envelope(topics.command, command)  # the late command
    refused = await kafka.read(topics.dlt, of_saga(saga_id, types.failed))
    assert "refused" in Envelope.decode(refused[0].value).payload["reason"]
    assert await effect() == before, "the late command is refused: nothing applied"
    assert not await kafka.read(topics.success, of_saga(saga_id, types.done), within=1)


async def test_repeated_start_re_emits_the_outcome(api: Api, kafka: Kafka) -> None:
    customer = await api.account("20.00")
    product = await api.product(2)
    order = await api.order(customer, (product, 1, "5.00"))
    await api.decided(order["id"])
    starts = await kafka.read("orchestrator", of_saga(order["id"], "saga.start"))
    start = Envelope.decode(starts[0].value)

    await kafka.send_envelope("orchestrator", start)  # duplicate: nothing new
    await kafka.send_envelope("orchestrator", start.model_copy(update={"id": uuid.uuid4()}))

    outcomes = await kafka.read(
        "orchestrator.response", of_saga(order["id"], "saga.completed"), count=2
    )
    assert len(outcomes) == 2
    assert ids(outcomes)[0] == ids(outcomes)[1]
    saga = await api.saga(order["id"])
    commands = [e["type"] for e in saga["history"] if e["direction"] == "sent"]
    assert commands.count("payment.charge") == 1
    assert await api.balance(customer) == "15.00"


REPLAYS = {
    # stock on hand, the saga's end, the replies delivered again, the balance left of 20.00
    "completed": (
        2,
        "COMPLETED",
        [
            ("payment.success", "payment.charged"),
            ("stock.success", "stock.reserved"),
            ("orchestrator.response", "saga.completed"),
        ],
        "10.00",
    ),
    "compensated": (
        1,
        "COMPENSATED",
        [
            ("stock.dlt", "stock.failed"),
            ("payment.success", "payment.compensated"),
            ("orchestrator.response", "saga.compensated"),
        ],
        "20.00",
    ),
}


@pytest.mark.parametrize("ending", list(REPLAYS))
async def test_repeated_replies_to_the_orchestrator_and_the_order_change_nothing(
    api: Api, kafka: Kafka, ending: str
) -> None:
    on_hand, saga_status, replies, balance = REPLAYS[ending]
    customer = await api.account("20.00")
    product = await api.product(on_hand)
    order = await api.order(customer, (product, 2, "5.00"))
    decided = await api.decided(order["id"])
    saga_before = await api.saga_status(order["id"], saga_status)

    await replay(kafka, order["id"], replies)

    async def recorded() -> dict[str, Any] | None:
        saga = await api.saga(order["id"])
        received = [e["type"] for e in saga["history"] if e["direction"] == "received"]
        done = all(received.count(type_) == 2 for topic, type_ in replies[:2])
        return saga if done else None

    saga_after = await eventually(recorded, what="the repeated replies to be recorded")
    sent = [e["type"] for e in saga_after["history"] if e["direction"] == "sent"]
    assert sent == [e["type"] for e in saga_before["history"] if e["direction"] == "sent"]
    assert saga_after["status"] == saga_status
    assert (await api.get("order", f"/orders/{order['id']}")).json() == decided
    assert await api.balance(customer) == balance


async def test_every_message_of_a_saga_carries_its_trace(api: Api, kafka: Kafka) -> None:
    customer = await api.account("20.00")
    product = await api.product(2)
    order = await api.order(customer, (product, 1, "5.00"))
    await api.decided(order["id"])

    for topic in ("orchestrator", "payment", "payment.success", "orchestrator.response"):
        record = (await kafka.read(topic, of_saga(order["id"])))[0]
        trace = header_value(record.headers, "traceparent")
        assert trace.startswith(f"00-{uuid.UUID(order['id']).hex}-"), (topic, trace)
