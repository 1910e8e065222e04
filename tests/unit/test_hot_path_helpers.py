"""The hot path's shortcuts give the answers of what they replace."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

from aiokafka.partitioner import DefaultPartitioner

from sagaline.http.prefer import MAX_WAIT_S, preferred_wait
from sagaline.kafka.clients import key_partitioner
from sagaline.services.order.models import OrderStatus
from sagaline.services.order.rows import OrderRow, new_order
from sagaline.services.order.waiters import DecisionWaiters
from sagaline.storage.db import dump_json


def test_key_partitioner_agrees_with_the_default_one() -> None:
    rng = random.Random(7)
    keys = [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(2000)]
    keys += [rng.randbytes(rng.randrange(0, 40)) for _ in range(500)]
    for count in (1, 3, 6, 12, 64):
        partitions = list(range(count))
        for key in keys * 2:  # the second pass is answered from the remembered hashes
            expected = DefaultPartitioner()(key, partitions, partitions)
            assert key_partitioner(key, partitions, partitions) == expected


def test_json_columns_round_trip_what_either_encoder_takes() -> None:
    values = [
        {"reason": "no stock", "items": [{"q": 2, "price": 1.5}], "ok": True, "none": None},
        [["type", "cGF5bWVudA=="]],
        {"huge": 2**70},  # beyond orjson's 64 bits: the standard library writes it
        "é ✓",
    ]
    for value in values:
        assert json.loads(dump_json(value)) == value


def _order(status: OrderStatus = OrderStatus.PENDING) -> OrderRow:
    return new_order("c", [], 1) | {"status": status}


async def test_waiters_hand_the_decided_order_to_the_long_poll() -> None:
    waiters = DecisionWaiters()
    placed = _order()
    waiters.placed(placed)
    assert waiters.known(placed["id"]) is placed
    waiting = asyncio.create_task(waiters.wait(placed["id"], 5))
    await asyncio.sleep(0)  # the waiter registers
    decided = _order(OrderStatus.APPROVED)
    decided["id"] = placed["id"]
    waiters.decided(decided)
    assert await asyncio.wait_for(waiting, 1) is decided
    assert waiters.known(placed["id"]) is decided
    assert await waiters.wait(uuid.uuid4(), 0.01) is None  # nobody decides it: timed out


async def test_a_decision_is_answered_from_memory_only_when_this_replica_knows_the_order() -> None:
    waiters = DecisionWaiters()
    waiters.recheck_s = 0.05
    decided = _order(OrderStatus.REJECTED)
    waiters.decided(decided)
    assert await waiters.decision(decided["id"], 5) is decided  # at once: no wait, no read
    stranger = uuid.uuid4()
    assert await asyncio.wait_for(waiters.decision(stranger, 5), 0.01) is None  # not known here
    assert await waiters.decision(stranger, 5, placed_here=True) is None  # waited, undecided
    placed = _order()
    waiters.placed(placed)
    waiting = asyncio.create_task(waiters.decision(placed["id"], 5))
    await asyncio.sleep(0)
    approved = _order(OrderStatus.APPROVED)
    approved["id"] = placed["id"]
    waiters.decided(approved)
    assert await asyncio.wait_for(waiting, 1) is approved


def test_waiters_remember_only_the_most_recent_orders() -> None:
    waiters = DecisionWaiters()
    waiters.remembered = 3
    orders = [_order() for _ in range(5)]
    for order in orders:
        waiters.placed(order)
    assert [waiters.known(o["id"]) is not None for o in orders] == [False, False, True, True, True]


def test_prefer_wait_is_read_as_rfc_7240_says() -> None:
    assert preferred_wait("wait=10") == 10
    assert preferred_wait("respond-async, wait=2.5") == 2.5
    assert preferred_wait('WAIT="3"') == 3
    assert preferred_wait("wait=1000") == MAX_WAIT_S
    for ignored in (None, "", "respond-async", "wait=soon", "wait=nan", "wait=-4"):
        assert preferred_wait(ignored) == 0
