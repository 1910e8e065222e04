"""`sagaline bench relay`: one outbox relay on PostgreSQL, from commit to published, and the order
its records reach the broker in.

The broker, PostgreSQL, topics, databases and migrations come from the stack's own code paths;
of its processes only the payment relay runs, started as the stack starts it. N outbox rows are
committed in one transaction, as a service writes them; the time runs from that commit until the
relay has marked every row published. The topic is then read from its beginning, and each key's
sequence numbers must arrive in order, none missing (duplicates are at-least-once's right).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from sagaline.delivery.outbox import send_raw
from sagaline.delivery.relay.leadership import LEADER_LOCK_ID
from sagaline.domain.messages import ORDER_SAGA, SagaTopics
from sagaline.lab.databases import drop
from sagaline.lab.progress import counting_progress
from sagaline.lab.stack import ManagedProcess, Stack, StackConfig, StackError
from sagaline.measure.bench import tree_cpu_s
from sagaline.measure.profiling import profiled
from sagaline.settings import Settings
from sagaline.storage.db import Database

SERVICE = "payment"
RELAY = f"{SERVICE}-relay"
TOPIC = SagaTopics(ORDER_SAGA).step(SERVICE).success  # the order saga's stack runs the bench
POLL_S = 0.05
_LEADING = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = %s
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_PUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"


@dataclass(frozen=True)
class RelayBenchOptions:
    messages: int = 20_000
    keys: int = 1000
    profile: Path | None = None
    lead_timeout_s: float = 60
    publish_timeout_s: float = 600
    consume_timeout_s: float = 120


class RelayStack(Stack):
    """The stack with one process: the payment relay (services and other relays not spawned)."""

    def _spawn(self, name: str, arguments: list[str], *, database: str | None = None) -> None:
        if name == RELAY:
            super()._spawn(name, arguments, database=database)

    def wait_ready(self, timeout_s: float) -> None:
        """Until the relay holds its leader lock (it publishes only then)."""
        deadline = time.monotonic() + timeout_s
        relay = self.processes[RELAY]
        while not _leading(self.urls[SERVICE]):
            if not relay.alive():
                raise StackError(f"{RELAY} exited:\n{relay.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"{RELAY} not leading after {timeout_s:.0f}s:\n{relay.log_tail()}")
            time.sleep(POLL_S)


def _leading(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(_LEADING, (LEADER_LOCK_ID,)).fetchone()
    return bool(row and row[0])


def order_violations(records: Iterable[tuple[bytes, int]]) -> list[str]:
    """What breaks per-key order in (key, sequence number) records, in the order read.

    Per key, the first occurrences of the numbers must strictly increase and leave none of
    0..highest out; a number seen before again is a duplicate (at-least-once), not a violation.
    """
    seen: dict[bytes, set[int]] = defaultdict(set)
    last: dict[bytes, int] = {}
    violations: list[str] = []
    for key, number in records:
        if number in seen[key]:
            continue
        if key in last and number < last[key]:
            violations.append(f"key {key!r}: {number} after {last[key]}")
        seen[key].add(number)
        last[key] = max(number, last.get(key, number))
    for key, numbers in seen.items():
        absent = sorted(set(range(max(numbers) + 1)) - numbers)
        if absent:
            violations.append(f"key {key!r}: missing {absent[:10]}")
    return violations


def duplicates(records: Iterable[tuple[bytes, int]]) -> int:
    """Records whose (key, number) was read before."""
    records = list(records)
    return len(records) - len(set(records))


def outbox_rows(messages: int, keys: int) -> list[tuple[bytes, bytes]]:
    """(key, value) per row: `keys` saga ids round-robin, each value its key's next number."""
    saga_ids = [str(uuid.uuid4()).encode() for _ in range(keys)]
    return [
        (saga_ids[i % keys], json.dumps({"key_seq": i // keys}).encode()) for i in range(messages)
    ]


async def insert(url: str, rows: list[tuple[bytes, bytes]]) -> float:
    """Commit every row in one transaction, through the outbox as a service writes it; returns
    the monotonic time of the commit."""
    db = Database(url, pool_size=1)
    try:
        async with db.transaction() as session:
            for key, value in rows:
                send_raw(session, topic=TOPIC, key=key, value=value, headers=[])
        return time.monotonic()
    finally:
        await db.dispose()


def wait_published(
    url: str, messages: int, relay: ManagedProcess, options: RelayBenchOptions, progress: Any
) -> float:
    """Poll until every row is marked published; returns the monotonic time it was seen."""
    task = progress.add_task("published", total=messages)
    deadline = time.monotonic() + options.publish_timeout_s
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            row = connection.execute(_PUBLISHED).fetchone()
            done = int(row[0]) if row else 0
            now = time.monotonic()
            progress.update(task, completed=done)
            if done >= messages:
                return now
            if not relay.alive():
                raise StackError(f"{RELAY} exited at {done}/{messages}:\n{relay.log_tail()}")
            if now > deadline:
                raise StackError(
                    f"only {done}/{messages} published after {options.publish_timeout_s:.0f}s"
                )
            time.sleep(POLL_S)


async def read_topic(bootstrap_servers: str, timeout_s: float) -> list[tuple[bytes, int]]:
    """(key, key_seq) of every record of the topic, from its beginning to its current end."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap_servers,
        group_id=None,  # no group: every partition of the topic is assigned to this consumer
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **Settings().kafka_security().client_options(),
    )
    await consumer.start()
    try:
        partitions = await _assigned(consumer, timeout_s)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        return await _read_until(consumer, ends, timeout_s)
    finally:
        await consumer.stop()


async def _assigned(consumer: AIOKafkaConsumer, timeout_s: float) -> list[TopicPartition]:
    """The topic's partitions, once the consumer's metadata has them."""
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise StackError(f"no partitions of {TOPIC} assigned in {timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)
    return sorted(consumer.assignment())


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], timeout_s: float
) -> list[tuple[bytes, int]]:
    records: list[tuple[bytes, int]] = []
    deadline = time.monotonic() + timeout_s
    while await _behind(consumer, ends):
        if time.monotonic() > deadline:
            raise StackError(f"read {len(records)} records of {TOPIC} in {timeout_s:.0f}s only")
        batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
        for batch in batches.values():
            records += [(r.key or b"", json.loads(r.value or b"{}")["key_seq"]) for r in batch]
    return records


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return True
    return False


def missing(records: list[tuple[bytes, int]], rows: list[tuple[bytes, bytes]]) -> int:
    """Rows committed whose (key, number) was never read."""
    expected = {(key, json.loads(value)["key_seq"]) for key, value in rows}
    return len(expected - set(records))


def measure(
    stack: Stack, options: RelayBenchOptions, console: Console, *, show: bool
) -> dict[str, Any]:
    relay = stack.processes[RELAY]
    assert relay.process is not None
    pid = relay.process.pid
    url = stack.urls[SERVICE]
    rows = outbox_rows(options.messages, options.keys)
    cpu_before = tree_cpu_s([pid])
    with (
        profiled(options.profile, {RELAY: pid}, f"n{options.messages}", console),
        counting_progress(console, show=show, label_width=10) as progress,
    ):
        committed = asyncio.run(insert(url, rows))
        published = wait_published(url, options.messages, relay, options, progress)
        cpu_s = tree_cpu_s([pid]) - cpu_before
    records = asyncio.run(read_topic(stack.bootstrap_servers, options.consume_timeout_s))
    violations = order_violations(records)
    seconds = max(published - committed, 1e-6)
    return {
        "messages": options.messages,
        "keys": options.keys,
        "seconds": round(seconds, 3),
        "messages_per_s": round(options.messages / seconds, 1),
        "relay_cpu_ms_per_1000": round(cpu_s * 1000 / (options.messages / 1000), 1),
        "records_read": len(records),
        "duplicates": duplicates(records),
        "missing": missing(records, rows),
        "order_ok": not violations,
        "violations": violations[:20],
    }


def run_relay_bench(
    config: StackConfig, options: RelayBenchOptions, console: Console, *, show: bool
) -> dict[str, Any]:
    """Start the parts, measure, and stop them (and drop the databases made on a given server)."""
    stack = RelayStack(config)
    try:
        with console.status("starting") as status:
            stack.start(progress=lambda message: status.update(message))
        return measure(stack, options, console, show=show)
    finally:
        stack.stop()
        if config.database_url is not None and config.database_prefix:
            drop(stack.urls)


def render_relay_bench(result: dict[str, Any], console: Console, title: str) -> None:
    table = Table(title=title, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    order = "[green]ok[/green]" if result["order_ok"] else "[red]VIOLATED[/red]"
    for measure, value in (
        ("messages", str(result["messages"])),
        ("keys", str(result["keys"])),
        ("commit to all published (s)", f"{result['seconds']:.2f}"),
        ("messages/s", f"{result['messages_per_s']:.1f}"),
        ("relay CPU ms per 1000 messages", f"{result['relay_cpu_ms_per_1000']:.1f}"),
        ("records read", str(result["records_read"])),
        ("duplicates", str(result["duplicates"])),
        ("missing", str(result["missing"])),
        ("per-key order", order),
    ):
        table.add_row(measure, value)
    console.print(table)
    for violation in result["violations"]:
        console.print(f"[red]{violation}[/red]")
