"""The reference saga's four services: the lab's table of their ports and database names (any
other step of a Saga the lab runs gets the next free port after them and `<step>db`), the names
the lab gives the services of several Sagas run side by side (`Instance`), and shorthands by
name over their declarations.

How each service is assembled, and where its migrations are, is its own declaration
(`sagaline.services.<name>.plugin`), found like any other service's through the entry points of
the group `sagaline.services` (`sagaline.registration`). Nothing here is needed to run a new step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sagaline.domain.messages import ORDER_SAGA

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sagaline.domain.definition import SagaDefinition
    from sagaline.settings import Settings

# The reference saga's services, as the lab (`sagaline up|demo|verify|chaos`) starts them.
SERVICES = ("orchestrator", "order", "payment", "stock")
PORTS = {"orchestrator": 8080, "order": 8081, "payment": 8082, "stock": 8083}
DATABASES = {
    "orchestrator": "order_orchestratordb",
    "order": "orderdb",
    "payment": "paymentdb",
    "stock": "stockdb",
}


def services_of(definition: SagaDefinition) -> list[str]:
    """The services a Saga runs, as the lab starts them: the orchestrator, the initiator (if it
    has one) and each step, in the Saga's order."""
    initiator = definition.spec.initiator_name
    return ["orchestrator", *([initiator] if initiator else []), *definition.step_names]


def database_name(service: str) -> str:
    """The lab's database of a service: the reference four's own, else `<service>db`."""
    return DATABASES.get(service, f"{service}db")


@dataclass(frozen=True)
class Instance:
    """One service of one Saga as the lab runs it beside other Sagas' (`sagaline up --saga-file
    A --saga-file B`): the order saga's keep their names and databases (`payment`, `paymentdb`);
    any other saga's are `<saga>-<service>` in `<saga>_<service>db`."""

    saga: str
    service: str  # what `sagaline serve|relay|migrate <service>` runs

    @property
    def name(self) -> str:
        """Its processes (`<name>`, `<name>-relay`), its port and its logs are named after it."""
        return self.service if self.saga == ORDER_SAGA else f"{self.saga}-{self.service}"

    @property
    def database(self) -> str:
        if self.saga == ORDER_SAGA:
            return database_name(self.service)
        return f"{self.saga}_{self.service}db"


def instances_of(definition: SagaDefinition) -> list[Instance]:
    """The services of a Saga (`services_of`) as the lab runs them."""
    return [Instance(definition.name, service) for service in services_of(definition)]


def is_participant(service: str) -> bool:
    """Whether the registered service of this name is a step."""
    from sagaline.registration import find

    return find(service).is_step


def build_app(service: str, settings: Settings | None = None) -> FastAPI:
    """The app of the registered service of this name."""
    from sagaline import registration

    return registration.build_app(registration.find(service), settings)
