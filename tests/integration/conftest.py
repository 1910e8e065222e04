from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.support import postgres_reachable

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"
        ),
    ),
]


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http
