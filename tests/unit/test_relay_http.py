"""The relay's own port: Prometheus metrics and a liveness endpoint, on the relay's loop."""

from __future__ import annotations

from pathlib import Path

import httpx

from sagaline.delivery.relay.health import start_relay_http
from sagaline.delivery.relay.loop import Relay
from sagaline.lab.ports import free_port
from sagaline.storage.db import Database
from sagaline.telemetry.metrics import PUBLISHED


async def test_the_relay_serves_its_metrics_and_its_health(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'payment.db'}", pool_size=1)
    relay = Relay(db, service="payment", bootstrap_servers="127.0.0.1:1")
    PUBLISHED.labels(service="payment").inc(3)
    port = free_port()
    runner = await start_relay_http(relay, "127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health = await http.get("/healthz")
            metrics = await http.get("/metrics")
            missing = await http.get("/nothing")
    finally:
        await runner.cleanup()
        await db.dispose()
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": "payment", "role": "standby"}
    assert metrics.status_code == 200
    published = [
        line
        for line in metrics.text.splitlines()
        if line.startswith('sagaline_relay_published_total{service="payment"}')
    ]
    assert published and float(published[0].split()[-1]) >= 3
    assert missing.status_code == 404
