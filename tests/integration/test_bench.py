"""`sagaline bench relay` end to end: the real relay process, broker and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Parts

RELAY_PARTS = [Parts("embedded", "postgresql")]


def bench_relay(server_url: str, *options: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "sagaline", "bench", "relay", "--messages", "3000"]
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
    result = bench_relay(postgres_server, "--profile", str(tmp_path))
    assert result["order_ok"]
    svgs = list(tmp_path.glob("*-payment-relay.svg"))
    assert len(svgs) == 1, sorted(tmp_path.iterdir())
    # The relay's own code was sampled, not just the interpreter idling. Which of its frames
    # depends on the few samples a short run gets (once only `_publish_loop` awaiting
    # `publish_once` was caught, in CI), so any frame of services/common/relay.py counts.
    assert "services/common/relay.py" in svgs[0].read_text()
