"""What runs in a pod: one service (`serve`), one service's outbox relay (`relay`), and the
migrations of one service's database (`migrate`).

The image's commands: nothing here imports the lab (`sagaline[lab]`), which is not in it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from sagaline.cli.options import ServiceArg, StepOption, check_service, console
from sagaline.storage.db import redact

if TYPE_CHECKING:
    from sagaline.domain.definition import SagaDefinition
    from sagaline.settings import Settings


def _logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def _settings() -> Settings:
    """The process's settings from its environment; a bad one is named, and the process exits."""
    from pydantic import ValidationError

    from sagaline.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        prefix = Settings.model_config.get("env_prefix", "")
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            field = Settings.model_fields.get(name)
            variable = f"{prefix}{name}" if field and field.validation_alias is None else name
            console.print(f"[red]{variable.upper()}: {error['msg']}[/red]")
        raise typer.Exit(2) from exc


def _definition(settings: Settings) -> SagaDefinition:
    """The saga this process runs; a definition or retention it cannot run with is named."""
    from sagaline.service import effective_definition

    try:
        return effective_definition(settings)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def serve(
    service: ServiceArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: the service's own port.")] = None,
    migrate: Annotated[bool, typer.Option(help="Run the migrations first.")] = False,
    step: StepOption = None,
) -> None:
    """Run one service (HTTP API and consumer loop)."""
    import uvicorn

    from sagaline.garbage_collector import settle_after_start
    from sagaline.registration import build_app, upgrade

    plugin = check_service(service, step)
    settings = _settings()
    _definition(settings)
    _logging(settings.log_level, service)
    if migrate:
        upgrade(plugin, settings.database)
    application = build_app(plugin, settings)
    settle_after_start()
    uvicorn.run(
        application,
        host=host,
        port=port or plugin.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        timeout_graceful_shutdown=5,
    )


def relay(
    service: ServiceArg,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics and /healthz on this port. Default: SAGALINE_RELAY_METRICS_PORT, "
            "else none.",
            min=1,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics port.")] = "0.0.0.0",
    step: StepOption = None,
) -> None:
    """Run the outbox relay of one service's database."""
    from sagaline.delivery.relay.health import start_relay_http
    from sagaline.delivery.relay.loop import Relay
    from sagaline.garbage_collector import settle_after_start
    from sagaline.service import topic_layout
    from sagaline.storage.db import Database
    from sagaline.telemetry import tracing

    check_service(service, step)
    settings = _settings()
    _logging(settings.log_level, f"{service}-relay")
    definition = _definition(settings)
    partitions, replicas = topic_layout(settings, definition)

    async def main() -> None:
        tracing.configure(f"{service}-relay")
        db = Database(settings.database, pool_size=2)
        worker = Relay(
            db,
            service=service,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            listen_timeout_s=settings.relay_listen_timeout_s,
            mark_delay_s=settings.relay_mark_delay_s,
            outbox_retention_s=settings.outbox_retention_s,
            inbox_retention_s=settings.inbox_retention_s,
            purge_interval_s=settings.purge_interval_s,
            create_topics=definition.topics() if settings.create_topics else (),
            partitions=partitions,
            replicas=replicas,
            security=settings.kafka_security(),
            broker=settings.broker,
            saga=definition.name,
            dead_letter_topic=definition.saga_topics.dead_letters_of(
                service, definition.step_names
            ),
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        port = metrics_port or settings.relay_metrics_port
        http = await start_relay_http(worker, metrics_host, port) if port else None
        settle_after_start()
        try:
            await worker.run()
        finally:
            if http is not None:
                await http.cleanup()
            await db.dispose()

    import uvloop

    uvloop.run(main())


def migrate(service: ServiceArg, step: StepOption = None) -> None:
    """Apply the Alembic migrations of one service's database (DATABASE_URL)."""
    from sagaline.registration import upgrade

    plugin = check_service(service, step)
    settings = _settings()
    upgrade(plugin, settings.database)
    console.print(f"{service}: {redact(settings.database)} is up to date")
