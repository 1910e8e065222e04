"""Pieces the HTTP APIs share: strict request models, identifiers, status counts."""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.http.limits import IDENTIFIER_LENGTH
from sagaline.storage.db import Database

T = TypeVar("T")

Identifier = Annotated[
    str,
    Field(min_length=1, max_length=IDENTIFIER_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
]
PAGE_LIMIT = 1000


class StrictModel(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


async def get_or_404(db: Database, model: type[T], key: Any, what: str) -> T:
    """The row of `model` with primary key `key`, or a 404 that names what is missing."""
    async with db.reads() as session:
        row = await session.get(model, key)
    if row is None:
        raise HTTPException(404, f"no {what} {key}")
    return row


async def count_by(session: AsyncSession, column: Any) -> dict[str, int]:
    rows = await session.execute(select(column, func.count()).group_by(column))
    return {str(value): count for value, count in rows.all()}


def _json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as strings: JSON has no such numbers, yet a client may
    send them (Python's parser reads `NaN` and `Infinity`) and the error echoes its input."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 (every problem with its location), renderable whatever the input was."""
    assert isinstance(exc, RequestValidationError)
    detail = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)
