"""The services of a Saga (or of several) and their relays as local processes, as their pods
would run them: on the topics the Strimzi stand-in made from the operator's KafkaTopics
(`SAGALINE_CREATE_TOPICS=false`: nothing creates a topic), each on the database URL given (the
Secret's its Saga names, on the local PostgreSQL the CloudNativePG stand-in provisioned), with
the Saga file the cluster holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from sagaline.lab.stack import Stack, StackConfig, StackError


class ClusterStack(Stack):
    """A Stack that creates no topic and uses the given database URLs."""

    def __init__(self, config: StackConfig, urls: dict[str, str], partitions: int) -> None:
        super().__init__(config)
        self.urls = dict(urls)
        self.partitions = partitions

    def _create_topics(self) -> None:
        """Nothing is created: every topic of each Saga must already be in Kafka, with the
        Saga's partitions (else the services would run on topics a producer auto-created)."""
        topics = [topic for saga in self.definitions.values() for topic in saga.topics()]
        wanted = self.partitions
        found = asyncio.run(_partitions(self.bootstrap_servers, topics))
        wrong = {topic: count for topic, count in found.items() if count != wanted}
        if wrong:
            raise StackError(
                f"topics missing or not of {wanted} partitions before the services start: {wrong}"
            )


async def _partitions(bootstrap_servers: str, topics: list[str]) -> dict[str, int | None]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        # Only topics that exist are described: a metadata request naming a missing topic would
        # make Kafka (auto.create.topics.enable, its default) create it.
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in topics if t in existing])
    finally:
        await admin.close()
    counts: dict[str, int | None] = {topic: None for topic in topics}
    for entry in described:
        if not entry.get("error_code"):
            counts[entry["topic"]] = len(entry.get("partitions") or [])
    return counts


def cluster_stack(
    state_dir: Path,
    saga_file: Path,
    bootstrap_servers: str,
    server_url: str,
    urls: dict[str, str],
    ports: dict[str, int],
    *,
    partitions: int,
    more_saga_files: list[Path] | None = None,
) -> ClusterStack:
    config = StackConfig(
        state_dir=state_dir,
        database_url=server_url,
        broker="kafka",
        bootstrap_servers=bootstrap_servers,
        saga_file=saga_file,
        more_saga_files=list(more_saga_files or []),
        ports=dict(ports),
        extra_env={"SAGALINE_CREATE_TOPICS": "false"},
    )
    return ClusterStack(config, urls, partitions)
