"""SIGTERM is graceful: a service and its relay finish what they hold, hand it back and exit
within seconds; started again, they carry on with no second effect."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest

from sagaline.lab.stack import Stack
from sagaline.lab.verify import verify
from tests.integration.support import Api

GRACE_S = 8.0  # uvicorn gives open requests 5 s; the consumer then finishes its batch


async def exited(stack: Stack, name: str) -> tuple[int | None, float]:
    """Wait (bounded) for a process to exit; its return code and how long it took."""
    process = stack.processes[name].process
    started = time.monotonic()
    code = await asyncio.to_thread(_wait, process, GRACE_S + 2)
    return code, time.monotonic() - started


def _wait(process: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    assert process is not None
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("service", ["payment", "orchestrator"])
async def test_sigterm_under_load_exits_promptly_and_loses_nothing(
    stack: Stack, api: Api, service: str
) -> None:
    customer = await api.account("1000.00")
    product = await api.product(100)
    first = [await api.order(customer, (product, 1, "1.00")) for _ in range(10)]
    logs = {name: stack.processes[name].log_path for name in (service, f"{service}-relay")}
    offsets = {name: path.stat().st_size for name, path in logs.items()}

    for name in logs:
        stack.processes[name].signal(signal.SIGTERM)
    # Orders keep coming while they stop: their messages wait in the outbox and on the topic.
    during = [await api.order(customer, (product, 1, "1.00")) for _ in range(10)]
    results = await asyncio.gather(*(exited(stack, name) for name in logs))

    for name, (code, took) in zip(logs, results, strict=True):
        # uvicorn re-raises the SIGTERM once it has shut down, so -15 is a clean exit too.
        assert code in (0, -signal.SIGTERM), f"{name} exited with {code}"
        assert took < GRACE_S, f"{name} took {took:.1f}s to stop"
        tail = logs[name].read_bytes()[offsets[name] :].decode(errors="replace")
        assert "Traceback" not in tail, f"{name} stopped with an error:\n{tail}"
        finished = "stopped cleanly" if name == service else f"relay {service}: stopped"
        assert finished in tail, f"{name} did not finish its shutdown:\n{tail}"

    assert sorted(stack.restart_dead()) == sorted(logs)
    decided = [await api.decided(order["id"], within=60) for order in first + during]
    assert all(order["status"] == "APPROVED" for order in decided)
    assert await api.balance(customer) == "980.00"
    assert await api.stock(product) == 80
    report = await asyncio.to_thread(verify, stack.urls)
    assert report.ok, report.as_dict()
