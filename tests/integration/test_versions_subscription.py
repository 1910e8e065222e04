"""The orchestrator's consumer on a real broker reads the replies of a step the current Saga no
longer has once it handles a saga whose version still has it: the loop subscribes a new client
when the handler's topics grow (docs/design.md, "Changing a live Saga")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sagaline.delivery.consumer import MessageLoop
from sagaline.domain.envelope import Envelope
from sagaline.domain.messages import StepTypes
from sagaline.kafka.brokers import BrokerKind
from sagaline.services.orchestrator.handler import Orchestrator
from tests.integration.support import BROKERS, Kafka, eventually, started_broker
from tests.unit.orchestrator_harness import Harness, definition, migrated

V1 = definition("flight", "car", "hotel")
V2 = definition("flight", "hotel")  # car removed


@pytest.mark.parametrize("kind", BROKERS)
async def test_the_consumer_reads_a_removed_steps_replies_once_a_saga_uses_it(
    tmp_path: Path, kind: BrokerKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await migrated(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    with started_broker(kind, tmp_path) as broker:
        new = Orchestrator(V2)
        await new.start(db)  # no saga in flight: car's replies are not read
        assert "car" not in new.steps
        loop = MessageLoop(
            db,
            new,
            bootstrap_servers=broker.bootstrap_servers,
            broker=kind,
            group_id="versions-test",
            create_topics=V1.topics(),
            partitions=1,
        )
        task = asyncio.create_task(loop.run())
        try:

            async def assigned(count: int) -> bool:
                return loop.assigned == count

            await eventually(lambda: assigned(5), within=60, what="the current topics assigned")
            old = Harness(db, Orchestrator(V1))  # a replica still on V1, during the rollout
            saga_id = await old.start({"traveller": "ada"})
            await old.done(saga_id, "flight", {"seat": "12A"})  # car is commanded
            await Harness(db, new).tick_later(monkeypatch, 3600)  # the new one re-sends it

            await eventually(lambda: assigned(7), within=60, what="car's replies assigned too")
            reply = Envelope(
                type=StepTypes("car").done,
                saga_id=saga_id,
                saga=V1.name,
                step="car",
                attempt=2,
                payload={"car": "C-1"},
            )
            async with Kafka(broker.bootstrap_servers) as kafka:
                await kafka.send_envelope(new.steps["car"].success, reply)

            async def hotel_commanded() -> bool:
                return bool(await old.commands(saga_id, "hotel"))

            await eventually(hotel_commanded, within=60, what="hotel commanded after car's reply")
        finally:
            loop.stop()
            await asyncio.wait_for(task, timeout=10)
            await db.dispose()
