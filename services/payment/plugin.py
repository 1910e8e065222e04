"""The payment-service's declaration (entry point `payment` of the group `sagaline.services`)."""

from __future__ import annotations

from sagaline.services.payment.participant import payment

PAYMENT = payment
