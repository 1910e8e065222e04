"""The FastAPI application shared by the four services: lifespan, health, metrics.

A service supplies its routers, its consumer-loop handler and its periodic jobs; this module runs
the consumer loop and the jobs for the lifetime of the app and answers /healthz and /readyz.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

from sagaline.delivery.consumer import Handler, MessageLoop
from sagaline.delivery.errors import is_transient
from sagaline.domain.definition import SagaDefinition, consumer_group, load_definition
from sagaline.http.api import validation_error
from sagaline.http.auth import token_guard
from sagaline.http.limits import LIMITS
from sagaline.kafka.brokers import STALL_S
from sagaline.settings import Settings
from sagaline.storage.db import Database
from sagaline.telemetry import tracing

log = logging.getLogger(__name__)
Job = Callable[[Database], Awaitable[int]]
# Run once before the consumer subscribes (e.g. to learn which topics it consumes).
Startup = Callable[[Database], Awaitable[None]]


@dataclass
class Runtime:
    """Everything one service process holds."""

    name: str
    settings: Settings
    definition: SagaDefinition
    db: Database
    handler: Handler
    routers: list[APIRouter] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    loop: MessageLoop | None = None
    startup: list[Startup] = field(default_factory=list)


def effective_definition(settings: Settings) -> SagaDefinition:
    """The saga definition file, with the overrides the settings carry.

    Refuses (ValueError) an inbox retention shorter than the re-send horizon: a re-sent message
    could then arrive after its id was forgotten.
    """
    definition = load_definition(settings.saga_file)
    if settings.execution:
        definition = definition.with_execution(settings.execution)
    if settings.step_timeout_seconds or settings.max_attempts:
        definition = definition.with_timing(
            settings.step_timeout_seconds or definition.spec.step_timeout_seconds,
            settings.max_attempts or definition.spec.max_attempts,
        )
    horizon = definition.resend_horizon_s()
    if settings.inbox_retention_s < horizon:
        timings = definition.spec.timings()
        step = max(timings, key=lambda name: timings[name].resend_horizon_s())
        timing = timings[step]
        raise ValueError(
            f"SAGALINE_INBOX_RETENTION_S={settings.inbox_retention_s:g} is shorter than the "
            f"re-send horizon of {horizon:g} s (step {step}: time-out {timing.timeout_s:g} s, "
            f"maxAttempts {timing.max_attempts}, compensationMaxAttempts "
            f"{timing.compensation_max_attempts}); raise it to at least {horizon:g}"
        )
    return definition


def topic_layout(settings: Settings, definition: SagaDefinition) -> tuple[int, int]:
    """Partitions and replicas for topics this process creates (1 replica on a local broker)."""
    partitions = settings.topic_partitions or definition.spec.kafka.partitions
    return partitions, settings.topic_replicas or 1


async def runtime_of(request: Request) -> Runtime:
    """A coroutine, so FastAPI resolves it on the event loop rather than in a worker thread."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _run_job(runtime: Runtime, job: Job, stopping: asyncio.Event) -> None:
    interval = runtime.settings.timer_interval_s
    while not stopping.is_set():
        try:
            due = await job(runtime.db)
        except Exception as exc:
            if not is_transient(exc):
                log.exception("%s: periodic job failed", runtime.name)
            due = 0
        if due:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)


def create_app(runtime: Runtime) -> FastAPI:
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for step in runtime.startup:  # it fails the start, as a database unreachable would
            await step(runtime.db)
        partitions, replicas = topic_layout(settings, runtime.definition)
        loop = MessageLoop(
            runtime.db,
            runtime.handler,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=consumer_group(runtime.definition.name, runtime.name),
            batch_size=settings.consumer_batch_size,
            max_message_bytes=settings.max_message_bytes,
            broker=settings.broker,
            fetch_wait_ms=settings.consumer_fetch_wait_ms,
            create_topics=runtime.definition.topics() if settings.create_topics else (),
            partitions=partitions,
            replicas=replicas,
            security=settings.kafka_security(),
        )
        runtime.loop = loop
        stopping = asyncio.Event()
        tasks = [asyncio.create_task(loop.run(), name=f"{runtime.name}-consumer")]
        tasks += [asyncio.create_task(_run_job(runtime, job, stopping)) for job in runtime.jobs]
        try:
            yield
        finally:
            loop.stop()
            stopping.set()
            _, unfinished = await asyncio.wait(tasks, timeout=10)
            for task in unfinished:
                task.cancel()
            await runtime.db.dispose()
            if unfinished:
                log.warning("%s: stopped; %d tasks cancelled", runtime.name, len(unfinished))
            else:
                log.info("%s: stopped cleanly (batch finished, offsets committed)", runtime.name)

    # Bodies over the limit are refused with 413 while they are read, before any parsing.
    app = FastAPI(
        title=f"sagaline {runtime.name}", lifespan=lifespan, max_body_size=LIMITS.max_body_bytes
    )
    app.state.runtime = runtime
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(runtime.db.ping(), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        loop = runtime.loop
        checks["broker"] = "ok" if loop is not None and loop.kafka_ok else "unreachable"
        if loop is not None and loop.idle_s > STALL_S:  # the watchdog replaces it at wedged_s
            checks["consumer"] = f"blocked for {loop.idle_s:.0f}s"
        ready = all(value == "ok" for value in checks.values())
        # Informational: a replica without partitions (more replicas than partitions) is ready.
        partitions = loop.assigned if loop is not None else 0
        body = {"ready": ready, **checks, "partitions": partitions}
        return JSONResponse(body, status_code=200 if ready else 503)

    guard = Depends(token_guard(settings.api_token))
    for router in runtime.routers:
        app.include_router(router, dependencies=[guard])
    app.mount("/metrics", make_asgi_app())
    if tracing.configure(runtime.name):
        tracing.instrument_app(app, runtime.db.engine)
        runtime.db.trace_statements()
    return app
