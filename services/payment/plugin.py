"""The payment-service's declaration (entry point `payment` of the group `sagaline.services`)."""

from __future__ import annotations

from pathlib import Path

from sagaline.registration import step
from sagaline.services.payment.api import router
from sagaline.services.payment.participant import PaymentParticipant
from sagaline.services.registry import PORTS

PAYMENT = step(
    PaymentParticipant,
    router,
    Path(__file__).resolve().parent / "migrations",
    port=PORTS["payment"],
)
