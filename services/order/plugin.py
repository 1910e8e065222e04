"""The order-service's declaration (entry point `order` of the group `sagaline.services`): the
saga's initiator."""

from __future__ import annotations

from pathlib import Path

from sagaline.domain.definition import SagaDefinition
from sagaline.registration import Parts, Role, ServicePlugin
from sagaline.services.order import api
from sagaline.services.order.handler import OrderSagaInitiator
from sagaline.services.registry import PORTS
from sagaline.settings import Settings


def assemble(definition: SagaDefinition, settings: Settings) -> Parts:
    initiator = OrderSagaInitiator(definition, settings.start_timeout_s)
    return Parts(initiator, [api.router], [initiator.tick])


ORDER = ServicePlugin(
    name="order",
    role=Role.INITIATOR,
    assemble=assemble,
    migrations=Path(__file__).resolve().parent / "migrations",
    port=PORTS["order"],
)
