"""Three relays on one PostgreSQL database (a Deployment with three replicas): the leader is
SIGKILLed twice while the service keeps committing, and per saga nothing is published out of
commit order, nothing is lost, and a standby takes over without stalling."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import signal
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from sagaline import registration
from sagaline.delivery import outbox
from sagaline.delivery.outbox import OUTBOX
from sagaline.delivery.relay.leadership import LEADER_LOCK_ID
from sagaline.domain.envelope import Envelope
from sagaline.lab.stack import ManagedProcess
from sagaline.storage.db import Database
from tests.integration.support import BROKERS, Kafka, eventually, fresh_database, started_broker
from tests.integration.test_relay import Broker, kind_of, unpublished

TOPIC = "payment"
SAGAS = 24
MESSAGES = 900
RELAYS = 3
BATCH = 20  # rows a relay reads at once: what a killed leader can leave published twice


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    with started_broker(request.param, tmp_path / "broker") as started:
        yield started


@pytest.fixture
def database_url(postgres_server: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(postgres_server, tmp_path, "scaled_relays") as url:
        registration.upgrade(registration.find("payment"), url)
        yield url


@pytest.fixture
def relays(database_url: str, broker: Broker, tmp_path: Path) -> Iterator[list[str]]:
    """Three `sagaline relay payment` processes, as three replicas of a pod would run them."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        SAGALINE_BROKER=kind_of(broker),
        SAGALINE_LOG_LEVEL="info",
        SAGALINE_RELAY_BATCH_SIZE=str(BATCH),
    )
    processes = [
        ManagedProcess(
            f"relay-{i}",
            [sys.executable, "-m", "sagaline", "relay", "payment"],
            env,
            tmp_path / f"relay-{i}.log",
        )
        for i in range(RELAYS)
    ]
    for process in processes:
        process.start()
    yield [str(process.process.pid) for process in processes]
    for process in processes:
        process.signal(signal.SIGKILL)
        process.wait(5)


def leader_pid(database_url: str) -> int | None:
    """The OS process of the relay holding the leader lock, from its application_name."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEADER_LOCK_ID,),
        ).fetchone()
    return int(row[0].rsplit(" ", 1)[1]) if row else None


async def write(db: Database, sagas: list[uuid.UUID], total: int) -> None:
    """The service's side: transactions of one to four messages, each saga's numbered in order."""
    rng = random.Random(3)
    sequence: dict[uuid.UUID, int] = defaultdict(int)
    written = 0
    while written < total:
        async with db.transaction() as session:
            for _ in range(min(rng.randint(1, 4), total - written)):
                saga_id = rng.choice(sagas)
                sequence[saga_id] += 1
                envelope = Envelope(
                    type="payment.charge", saga_id=saga_id, saga="order", attempt=sequence[saga_id]
                )
                outbox.send(session, TOPIC, [envelope])
                written += 1


async def published(db: Database) -> int:
    async with db.engine.connect() as connection:
        query = select(func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.isnot(None))
        return int((await connection.execute(query)).scalar_one())


async def test_a_killed_leader_is_replaced_and_no_saga_is_reordered(
    database_url: str, broker: Broker, relays: list[str]
) -> None:
    db = Database(database_url)
    sagas = [uuid.uuid4() for _ in range(SAGAS)]
    writer = asyncio.create_task(write(db, sagas, MESSAGES))
    try:
        killed: list[int] = []
        for count in (MESSAGES // 4, MESSAGES // 2):
            await eventually(
                functools.partial(_at_least, db, count),
                within=60,
                what=f"{count} messages published",
            )
            leader = await eventually(
                lambda: asyncio.to_thread(leader_pid, database_url), within=10, what="a leader"
            )
            assert str(leader) in relays
            os.kill(leader, signal.SIGKILL)
            killed.append(leader)
            started = time.monotonic()
            successor = await eventually(
                lambda: _other_leader(database_url, killed), within=15, what="a new leader"
            )
            assert successor not in killed
            assert time.monotonic() - started < 15
        await writer
        await eventually(lambda: _none_left(db), within=60, what="every row published")
    finally:
        writer.cancel()
        await db.dispose()

    keys = {str(saga_id).encode() for saga_id in sagas}
    async with Kafka(broker.bootstrap_servers) as kafka:
        records = await kafka.read(TOPIC, lambda r: r.key in keys, count=MESSAGES, within=60)
    first_seen: dict[bytes, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for record in records:
        envelope = Envelope.decode(record.value)
        if str(envelope.id) not in seen:
            seen.add(str(envelope.id))
            first_seen[record.key].append(envelope.attempt)
    assert len(seen) == MESSAGES, "a message was lost"
    # Only one relay publishes at a time: the only copies are a killed leader's last batch.
    assert len(records) - MESSAGES <= len(killed) * BATCH
    for key, numbers in first_seen.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"saga {key!r} out of order: {numbers}"


async def _at_least(db: Database, count: int) -> bool:
    return await published(db) >= count


async def _none_left(db: Database) -> bool:
    return await unpublished(db) == 0


async def _other_leader(database_url: str, killed: list[int]) -> int | None:
    pid = await asyncio.to_thread(leader_pid, database_url)
    return pid if pid is not None and pid not in killed else None
