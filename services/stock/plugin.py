"""The stock-service's declaration (entry point `stock` of the group `sagaline.services`)."""

from __future__ import annotations

from sagaline.services.stock.participant import stock

STOCK = stock
