from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sagaline.lab.stack import Stack
from tests.integration.support import (
    STACK_PARTS,
    Api,
    Kafka,
    Parts,
    http_client,
    running_stack,
)


def server_for(request: pytest.FixtureRequest, parts: Parts) -> str | None:
    """The session's PostgreSQL server if `parts` run on PostgreSQL (started on first use)."""
    if parts.database != "postgresql":
        return None
    server: str = request.getfixturevalue("postgres_server")
    return server


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client() as http:
        yield http


@pytest.fixture(scope="module", params=STACK_PARTS, ids=str)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack of the saga as defined (sequential), one per test module and combination."""
    parts: Parts = request.param
    state_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with running_stack(state_dir, parts, server_url=server_for(request, parts)) as running:
        yield running


@pytest.fixture
def api(stack: Stack, client: httpx.AsyncClient) -> Api:
    return Api(stack, client)


@pytest.fixture
async def kafka(stack: Stack) -> AsyncIterator[Kafka]:
    async with Kafka(stack.bootstrap_servers) as bystander:
        yield bystander
