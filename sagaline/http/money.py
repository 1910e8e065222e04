"""Money: decimals with two places at the API, integer cents in the databases."""

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from sagaline.http.limits import LIMITS

# A JSON string ("12.50") or number; at most two decimals; never NaN or infinite.
Amount = Annotated[Decimal, Field(ge=0, le=LIMITS.max_amount, decimal_places=2)]
PositiveAmount = Annotated[Decimal, Field(gt=0, le=LIMITS.max_amount, decimal_places=2)]


def to_cents(amount: Decimal) -> int:
    return int(amount * 100)


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))
