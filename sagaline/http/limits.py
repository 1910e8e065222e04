"""Bounds on what an HTTP request may carry, read from the environment once per process.

The request models are built at import time from these values, so a process reads them before
it serves anything (every service process is started with its environment set). The bounds keep
every computed amount inside the databases' integer columns: a total is at most
items * quantity * price, in cents, and must fit a signed 64-bit integer.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
IDENTIFIER_LENGTH = 64  # the width of every identifier column


class HttpLimits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAGALINE_", extra="ignore")

    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_order_items: int = Field(100, ge=1, le=10_000)
    max_item_quantity: int = Field(10_000, ge=1, le=INT32_MAX)
    max_stock_quantity: int = Field(1_000_000_000, ge=1, le=INT32_MAX)
    max_amount: Decimal = Field(Decimal("1000000000"), gt=0, decimal_places=2)

    @model_validator(mode="after")
    def _totals_fit(self) -> HttpLimits:
        largest_total_cents = self.max_order_items * self.max_item_quantity * self.max_amount * 100
        if largest_total_cents > INT64_MAX:
            raise ValueError(
                "max_order_items * max_item_quantity * max_amount exceeds what an order total "
                "(cents in a 64-bit integer) can hold"
            )
        return self


LIMITS = HttpLimits()
