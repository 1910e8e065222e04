"""The consumer lag gauge: per held partition, the records not yet consumed.

Read from what the client already knows (the high watermark its last fetch response carried, and
its position), so it costs no request to the broker; at most once every `interval_s`, so a busy
loop does not pay it per batch.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from aiokafka.structs import TopicPartition

from sagaline.telemetry.metrics import CONSUMER_LAG
from sagaline.telemetry.throttle import Every

POSITION_WAIT_S = 0.1  # a position is known once fetched from; one being reset is skipped


class ConsumerLag:
    """Sets one consumer's lag series and removes those of partitions it no longer holds."""

    def __init__(self, service: str, interval_s: float = 1.0) -> None:
        self.service = service
        self._every = Every(interval_s)
        self._reported: set[TopicPartition] = set()

    async def update(self, consumer: AIOKafkaConsumer) -> None:
        if not self._every.due():
            return
        held: set[TopicPartition] = set(consumer.assignment())
        for tp in self._reported - held:
            self._remove(tp)
        for tp in held:
            highwater = consumer.highwater(tp)
            if highwater is None:  # not fetched from yet
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S)
            except (TimeoutError, IllegalStateError):
                continue
            CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
                max(0, highwater - position)
            )
            self._reported.add(tp)

    def clear(self) -> None:
        """The client is gone: it holds nothing."""
        self._every.reset()
        for tp in list(self._reported):
            self._remove(tp)

    def _remove(self, tp: TopicPartition) -> None:
        self._reported.discard(tp)
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(self.service, tp.topic, str(tp.partition))
