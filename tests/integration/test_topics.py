"""Every process creates the topics that are missing, laid out as the Saga definition says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from sagaline.delivery.consumer import MessageLoop
from sagaline.domain.definition import default_definition_path, load_definition
from sagaline.kafka.brokers import BrokerKind
from sagaline.services.payment.participant import payment
from sagaline.settings import Settings
from tests.integration.support import BROKERS, broker_and_payment_database, eventually


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_consumer_creates_the_missing_topics_then_holds_partitions(
    tmp_path: Path, kind: BrokerKind
) -> None:
    definition = load_definition(default_definition_path())
    async with broker_and_payment_database(tmp_path, kind) as (bootstrap_servers, db):
        loop = MessageLoop(
            db,
            payment.participant(definition, Settings()),
            bootstrap_servers=bootstrap_servers,
            broker=kind,
            group_id="topics-test",
            create_topics=definition.topics(),
            partitions=3,
        )
        task = asyncio.create_task(loop.run())
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        await admin.start()
        try:

            async def held() -> bool:
                return loop.assigned > 0

            await eventually(held, within=30, what="the consumer to hold its partitions")
            described = await admin.describe_topics(definition.topics())
            layout = {topic["topic"]: len(topic["partitions"]) for topic in described}
            assert layout == dict.fromkeys(definition.topics(), 3)
            assert loop.assigned == 6, "payment and payment.compensation, three partitions each"
        finally:
            loop.stop()
            await asyncio.wait_for(task, timeout=10)
            await admin.close()
