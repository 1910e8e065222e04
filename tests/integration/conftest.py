from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sagaline.stack import Stack
from tests.integration.support import Api, Kafka, postgres_reachable, running_stack

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


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack of the saga as defined (sequential), one per test module and backend."""
    state_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with running_stack(state_dir, request.param) as running:
        yield running


@pytest.fixture
def api(stack: Stack, client: httpx.AsyncClient) -> Api:
    return Api(stack, client)


@pytest.fixture
async def kafka(stack: Stack) -> AsyncIterator[Kafka]:
    async with Kafka(stack.bootstrap_servers) as bystander:
        yield bystander
