"""The four services by name: their ports, database names and how each is assembled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI

from sagaline.delivery.consumer import Handler
from sagaline.delivery.participant import Participant
from sagaline.domain.definition import SagaDefinition
from sagaline.service import Job, Runtime, create_app, effective_definition
from sagaline.services.orchestrator import api as orchestrator_api
from sagaline.services.orchestrator.handler import Orchestrator
from sagaline.services.order import api as order_api
from sagaline.services.order.handler import OrderSagaInitiator
from sagaline.services.payment import api as payment_api
from sagaline.services.payment.participant import PaymentParticipant
from sagaline.services.stock import api as stock_api
from sagaline.services.stock.participant import StockParticipant
from sagaline.settings import Settings
from sagaline.storage.db import Database

SERVICES = ("orchestrator", "order", "payment", "stock")
PORTS = {"orchestrator": 8080, "order": 8081, "payment": 8082, "stock": 8083}
DATABASES = {
    "orchestrator": "order_orchestratordb",
    "order": "orderdb",
    "payment": "paymentdb",
    "stock": "stockdb",
}
PARTICIPANTS: dict[str, tuple[type[Participant], APIRouter]] = {
    "payment": (PaymentParticipant, payment_api.router),
    "stock": (StockParticipant, stock_api.router),
}


@dataclass(frozen=True)
class Parts:
    handler: Handler
    routers: list[APIRouter]
    jobs: list[Job]


def _orchestrator(definition: SagaDefinition, settings: Settings) -> Parts:
    orchestrator = Orchestrator(definition)
    return Parts(orchestrator, [orchestrator_api.router], [orchestrator.tick])


def _order(definition: SagaDefinition, settings: Settings) -> Parts:
    initiator = OrderSagaInitiator(definition, settings.start_timeout_s)
    return Parts(initiator, [order_api.router], [initiator.tick])


def _participant(step: str) -> Callable[[SagaDefinition, Settings], Parts]:
    participant_class, router = PARTICIPANTS[step]

    def parts(definition: SagaDefinition, settings: Settings) -> Parts:
        return Parts(participant_class(definition), [router], [])

    return parts


ASSEMBLERS: dict[str, Callable[[SagaDefinition, Settings], Parts]] = {
    "orchestrator": _orchestrator,
    "order": _order,
    "payment": _participant("payment"),
    "stock": _participant("stock"),
}


def is_participant(service: str) -> bool:
    return service in PARTICIPANTS


def build_app(service: str, settings: Settings | None = None) -> FastAPI:
    if service not in ASSEMBLERS:
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    settings = settings or Settings()
    definition = effective_definition(settings)
    parts = ASSEMBLERS[service](definition, settings)
    runtime = Runtime(
        name=service,
        settings=settings,
        definition=definition,
        db=Database(settings.database),
        handler=parts.handler,
        routers=parts.routers,
        jobs=parts.jobs,
    )
    return create_app(runtime)
