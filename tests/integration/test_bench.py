"""`sagaline bench` end to end: the whole stack on the embedded broker and SQLite, and
`sagaline bench relay`: the real relay process, broker and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sagaline.lab.ports import free_port_block
from sagaline.services.registry import SERVICES
from tests.integration.support import Parts

RELAY_PARTS = [Parts("embedded", "postgresql")]
STACK_PARTS = [Parts("embedded", "sqlite")]
RUN_KEYS = {"concurrency", "sagas_per_s", "p50_ms", "p99_ms", "cpu_ms_per_saga", "pending"}


@pytest.mark.parametrize("parts", STACK_PARTS, ids=str)
def test_bench_runs_each_load_after_a_warmup_and_names_the_best(
    parts: Parts, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "sagaline", "bench", "--orders", "60", "--warmup", "20"]
    argv += ["--concurrency", "2,8", "--base-port", str(free_port_block(len(SERVICES))), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["invariants_ok"]
    assert result["partitions"] == 1, "a local stack's topics: one partition each by default"
    assert result["warmup"] == {
        "orders": 20,
        "concurrency": 8,
        "pending": 0,
        "invariants_ok": True,
    }
    runs = result["runs"]
    assert [run["concurrency"] for run in runs] == [2, 8]
    for run in runs:
        assert run.keys() >= RUN_KEYS
        assert run["pending"] == 0
        assert run["cpu_ms_per_saga"] > 0
    fitting = [run for run in runs if run["p99_ms"] < 500]
    if fitting:
        best = max(fitting, key=lambda run: run["sagas_per_s"])
        assert result["best"]["concurrency"] == best["concurrency"]
        assert result["best"]["sagas_per_s"] == best["sagas_per_s"]
    else:
        assert result["best"] is None


def bench_relay(server_url: str, *options: str, messages: int = 3000) -> dict[str, Any]:
    argv = [sys.executable, "-m", "sagaline", "bench", "relay", "--messages", str(messages)]
    argv += ["--keys", "50", "--broker", "embedded", "--database-url", server_url, "--json"]
    done = subprocess.run(
        [*argv, *options], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("parts", RELAY_PARTS, ids=str)
def test_bench_relay_keeps_order(parts: Parts, postgres_server: str) -> None:
    result = bench_relay(postgres_server)
    assert result["order_ok"], result["violations"]
    assert result["missing"] == 0
    assert result["messages_per_s"] > 0
    assert result["records_read"] >= 3000
    assert (result["broker"], result["database"]) == (parts.broker, parts.database)


@pytest.mark.parametrize("parts", RELAY_PARTS, ids=str)
def test_bench_relay_profile(parts: Parts, postgres_server: str, tmp_path: Path) -> None:
    # Enough rows to keep the relay busy for most of a second: 3,000 took ~0.1 s, which py-spy
    # (attached a moment before, sampling at 100 Hz) once missed entirely in CI.
    result = bench_relay(postgres_server, "--profile", str(tmp_path), messages=30_000)
    assert result["order_ok"]
    svgs = list(tmp_path.glob("*-payment-relay.svg"))
    assert len(svgs) == 1, sorted(tmp_path.iterdir())
    # The relay's own code was sampled, not just the interpreter idling. Which of its frames
    # depends on the few samples a short run gets (once only `_publish_loop` awaiting
    # `publish_once` was caught, in CI), so any frame of sagaline/delivery/relay/loop.py counts.
    assert "sagaline/delivery/relay/loop.py" in svgs[0].read_text()
