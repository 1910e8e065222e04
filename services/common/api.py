"""Pieces the HTTP APIs share: strict request models, identifiers, status counts."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.db import Database
from services.common.limits import IDENTIFIER_LENGTH

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
