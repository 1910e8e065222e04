"""The reference saga's four services: the lab's table of their ports and database names, and
shorthands by name over their declarations.

How each service is assembled, and where its migrations are, is its own declaration
(`sagaline.services.<name>.plugin`), found like any other service's through the entry points of
the group `sagaline.services` (`sagaline.registration`). Nothing here is needed to run a new step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

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


def is_participant(service: str) -> bool:
    """Whether the registered service of this name is a step."""
    from sagaline.registration import find

    return find(service).is_step


def build_app(service: str, settings: Settings | None = None) -> FastAPI:
    """The app of the registered service of this name."""
    from sagaline import registration

    return registration.build_app(registration.find(service), settings)
