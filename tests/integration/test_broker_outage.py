"""After a broker outage, every saga in flight ends within a stated bound of the broker's return.

Orders keep arriving at a steady rate while the broker is SIGKILLed, stays down, and is started
again (Apache Kafka on its log directory; the embedded broker empty, its topics re-created).
From the moment it serves again, every order must be decided and every saga ended within
CONVERGENCE_BOUND_S, and the invariants must hold. docs/design.md, "Delivery rules" ("Broker
outages"), derives the bound.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sagaline.kafka.brokers import BrokerKind
from sagaline.lab.load import bearer
from sagaline.lab.load import seed as seed_world
from sagaline.lab.stack import Stack
from sagaline.lab.verify import verify
from sagaline.measure.chaos import ChaosOptions, Placement, order_bodies, unfinished_count
from sagaline.services.registry import SERVICES
from tests.integration.conftest import server_for
from tests.integration.support import BROKERS, Parts, running_stack

RATE = 20.0  # orders per second, before, during and after the outage
BEFORE_S = 5.0
DOWN_S = 10.0
AFTER_S = 5.0
STEP_TIMEOUT_S = 10.0  # the saga's own stepTimeoutSeconds
# One step timeout (a command or reply whose consumer lost its group session is re-sent after
# it), one consumer session (10 s: a member the broker forgot joins again) and the re-join
# delay (3 s), plus the hops of a saga under this load.
CONVERGENCE_BOUND_S = STEP_TIMEOUT_S + 10.0 + 3.0 + 7.0


@pytest.mark.parametrize("kind", BROKERS)
def test_sagas_in_flight_end_within_the_bound_after_the_broker_returns(
    kind: BrokerKind, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    parts = Parts(kind, "postgresql")
    with running_stack(tmp_path, parts, server_url=server_for(request, parts)) as stack:
        measured = asyncio.run(outage(stack))
        report = verify(stack.urls)
        if measured["converged_in_s"] is None:
            print(warnings_in(stack.logs))  # what each process complained of, to say why
    print(f"broker outage on {kind}: {measured}")  # shown by `pytest -rP`: the measured figures

    assert measured["placed"] >= RATE * (BEFORE_S + DOWN_S + AFTER_S) * 0.8
    assert measured["converged_in_s"] is not None, f"still unfinished: {measured}"
    assert measured["converged_in_s"] <= CONVERGENCE_BOUND_S, measured
    assert report.ok, report.as_dict()


async def outage(stack: Stack) -> dict[str, Any]:
    """Load, a broker outage in the middle, then the seconds until nothing is unfinished."""
    options = ChaosOptions(duration_s=BEFORE_S + DOWN_S + AFTER_S, rate=RATE, seed=5)
    scenario, bodies = order_bodies(options, uuid.uuid4().hex[:8])
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), headers=bearer(stack.config.api_token)
    ) as client:
        await seed_world(client, {s: stack.service_url(s) for s in SERVICES}, scenario)
        placement = Placement(client, f"{stack.service_url('order')}/orders", bodies, RATE)
        started = time.monotonic()
        load = asyncio.create_task(placement.run(started + BEFORE_S + DOWN_S + AFTER_S))
        await asyncio.sleep(BEFORE_S)
        await asyncio.to_thread(stack.kill_broker)
        await asyncio.sleep(DOWN_S)
        assert await asyncio.to_thread(stack.restart_broker)
        back = time.monotonic()
        await load
        await placement.drain(timeout_s=30)
        converged: float | None = None
        unfinished = -1
        while time.monotonic() - back < CONVERGENCE_BOUND_S * 3:
            unfinished = await unfinished_count(client, stack)
            if unfinished == 0:
                converged = time.monotonic() - back
                break
            await asyncio.sleep(0.25)
    return {
        "placed": placement.placed,
        "converged_in_s": None if converged is None else round(converged, 1),
        "broker_restart_s": round(back - started - BEFORE_S - DOWN_S, 1),
        "unfinished": unfinished,
    }


def warnings_in(logs: Path, last: int = 12) -> str:
    """The last warnings and errors of every process's log (its own, not its Kafka client's)."""
    lines: list[str] = []
    for log in sorted(logs.glob("*.log")):
        if log.name == "broker.log":
            continue
        text = log.read_text(errors="replace").splitlines()
        found = [
            line
            for line in text
            if ("WARNING" in line or "ERROR" in line) and " aiokafka" not in line
        ]
        lines += [f"--- {log.name}: {len(found)} warnings or errors, the last:", *found[-last:]]
    return "\n".join(lines)
