"""The stock-service's declaration (entry point `stock` of the group `sagaline.services`)."""

from __future__ import annotations

from pathlib import Path

from sagaline.registration import step
from sagaline.services.registry import PORTS
from sagaline.services.stock.api import router
from sagaline.services.stock.participant import StockParticipant

STOCK = step(
    StockParticipant,
    router,
    Path(__file__).resolve().parent / "migrations",
    port=PORTS["stock"],
)
