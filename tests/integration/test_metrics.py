"""Every service's /metrics and every relay's metrics port answer operators' questions: how
sagas end and how long they take, how many are in flight, the outbox backlog, consumer lag and
dead letters by reason, on a running stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sagaline.lab.ports import free_port
from sagaline.lab.stack import Stack
from sagaline.services.registry import SERVICES
from tests.integration.support import EMBEDDED_SQLITE, Api, Kafka, eventually, running_stack

Samples = dict[str, list[Sample]]  # by family name, as exposed (a counter's without `_total`)


@pytest.fixture(scope="module")
def relay_ports() -> dict[str, int]:
    return {service: free_port() for service in SERVICES}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, relay_ports: dict[str, int]) -> Iterator[Stack]:
    """One stack whose relays serve their metrics, each on a port of its own."""
    state_dir: Path = tmp_path_factory.mktemp("metrics")
    service_env = {s: {"SAGALINE_RELAY_METRICS_PORT": str(p)} for s, p in relay_ports.items()}
    with running_stack(state_dir, EMBEDDED_SQLITE, service_env=service_env) as running:
        yield running


@pytest.fixture
def api(stack: Stack, client: httpx.AsyncClient) -> Api:
    return Api(stack, client)


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: Samples, family: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` of `family` carrying `labels` (None if there is none)."""
    for sample in samples.get(family, []):
        if sample.name == name and labels.items() <= sample.labels.items():
            return sample.value
    return None


async def test_metrics_answer_operators_questions(
    api: Api, stack: Stack, relay_ports: dict[str, int]
) -> None:
    customer = await api.account("100.00")
    poor = await api.account("1.00")
    product = await api.product(10)
    approved = [await api.order(customer, (product, 1, "2.00")) for _ in range(2)]
    rejected = await api.order(poor, (product, 1, "5.00"))
    assert [(await api.decided(o["id"]))["status"] for o in approved] == ["APPROVED"] * 2
    assert (await api.decided(rejected["id"]))["status"] == "REJECTED"
    async with Kafka(stack.bootstrap_servers) as kafka:  # poison for payment to dead-letter
        await kafka.send("payment", b"not an envelope", b"metrics-test")

    async def services_scraped() -> dict[str, Samples] | None:
        scraped = {s: await scrape(api.client, api.url(s, "/metrics/")) for s in SERVICES}
        orchestrator = scraped["orchestrator"]
        in_flight = [
            value(orchestrator, "sagaline_sagas_in_flight", "sagaline_sagas_in_flight", status=s)
            for s in ("RUNNING", "COMPENSATING")
        ]
        letters = value(
            scraped["payment"],
            "sagaline_dead_letters",
            "sagaline_dead_letters_total",
            service="payment",
            reason="invalid_envelope",
        )
        lag = [sample.value for s in SERVICES for sample in lag_series(scraped[s], s)]
        caught_up = all(lag_series(scraped[s], s) for s in SERVICES) and not any(lag)
        return scraped if in_flight == [0, 0] and letters == 1 and caught_up else None

    scraped = await eventually(
        services_scraped, within=30, what="no saga in flight, the poison dead-lettered, no lag"
    )
    orchestrator = scraped["orchestrator"]
    duration = "sagaline_saga_duration_seconds"
    completed = value(orchestrator, duration, f"{duration}_count", outcome="COMPLETED")
    compensated = value(orchestrator, duration, f"{duration}_count", outcome="COMPENSATED")
    assert completed is not None and completed >= 2
    assert compensated is not None and compensated >= 1
    total = value(orchestrator, duration, f"{duration}_sum", outcome="COMPLETED")
    assert total is not None and 0 < total < 60 * completed
    assert value(orchestrator, "sagaline_sagas", "sagaline_sagas_total", status="COMPLETED") == (
        completed
    )
    assert "sagaline_resends" in orchestrator  # exported, if nothing was re-sent

    async def relays_caught_up() -> dict[str, Samples] | None:
        scraped = {
            s: await scrape(api.client, f"http://127.0.0.1:{port}/metrics")
            for s, port in relay_ports.items()
        }
        backlog = [
            (
                value(r, "sagaline_relay_backlog", "sagaline_relay_backlog", service=s),
                value(
                    r,
                    "sagaline_relay_oldest_unpublished_age_seconds",
                    "sagaline_relay_oldest_unpublished_age_seconds",
                    service=s,
                ),
            )
            for s, r in scraped.items()
        ]
        return scraped if backlog == [(0, 0)] * len(scraped) else None

    relays = await eventually(relays_caught_up, within=30, what="every relay's backlog at 0")
    for service, samples in relays.items():
        published = value(
            samples,
            "sagaline_relay_published",
            "sagaline_relay_published_total",
            service=service,
        )
        assert published is not None and published >= 1, service


def lag_series(samples: Samples, service: str) -> list[Sample]:
    return [s for s in samples.get("sagaline_consumer_lag", []) if s.labels["service"] == service]
