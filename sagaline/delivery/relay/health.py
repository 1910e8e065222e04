"""The relay's own HTTP port: its Prometheus metrics and a liveness endpoint.

On Kubernetes the relay is a sidecar beside the app, so it serves on a port of its own (the
pod's `metrics` port), probed by the kubelet and scraped by Prometheus. aiohttp serves it on the
relay's event loop, so a hung loop fails the probe, and it installs no signal handlers: SIGTERM
stays the relay's, which stops after its current batch.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from sagaline.delivery.relay.loop import Relay


def relay_app(relay: Relay) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        role = "leader" if relay.is_leader else "standby"
        return web.json_response({"status": "ok", "service": relay.service, "role": role})

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler())
    app.router.add_get("/healthz", healthz)
    return app


async def start_relay_http(relay: Relay, host: str, port: int) -> web.AppRunner:
    """Serve until the returned runner is cleaned up."""
    runner = web.AppRunner(relay_app(relay), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
