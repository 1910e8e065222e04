"""The orchestrator's declaration (entry point `orchestrator` of the group `sagaline.services`)."""

from __future__ import annotations

from pathlib import Path

from sagaline.domain.definition import SagaDefinition
from sagaline.registration import Parts, Role, ServicePlugin
from sagaline.services.orchestrator import api
from sagaline.services.orchestrator.handler import Orchestrator
from sagaline.services.registry import PORTS
from sagaline.settings import Settings


def assemble(definition: SagaDefinition, settings: Settings) -> Parts:
    orchestrator = Orchestrator(definition)
    return Parts(orchestrator, [api.router], [orchestrator.tick], [orchestrator.start])


ORCHESTRATOR = ServicePlugin(
    name="orchestrator",
    role=Role.ORCHESTRATOR,
    assemble=assemble,
    migrations=Path(__file__).resolve().parent / "migrations",
    port=PORTS["orchestrator"],
)
