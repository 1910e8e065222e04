"""Fixtures of the operator tests: the emulated cluster, the API client, the orchestrator's API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import pytest
import pytest_asyncio
from sagaline_operator.config import OperatorConfig

from tests.operator.support import Api, Cluster, declare_resources, operator_config


@pytest.fixture
def kmock_options(kmock_options: dict) -> dict:
    """kmock's `kmock` fixture, serving our Cluster emulator."""
    return {**kmock_options, "cls": Cluster}


@pytest_asyncio.fixture
async def cluster(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    declare_resources(kmock)
    return kmock


@pytest_asyncio.fixture
async def api(cluster: kmock.KubernetesEmulator) -> AsyncIterator[Api]:
    client = Api(cluster)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def orchestrator_api() -> AsyncIterator[kmock.RawHandler]:
    """An HTTP server answering GET /<service>/<namespace>/sagas/summary like the orchestrator."""
    async with kmock.RawHandler() as handler, kmock.Server(handler):
        yield handler


@pytest.fixture
def config(cluster: kmock.KubernetesEmulator, orchestrator_api: kmock.RawHandler) -> OperatorConfig:
    summary = str(orchestrator_api.url).rstrip("/") + "/{service}/{namespace}/sagas/summary"
    return operator_config(cluster, summary)
