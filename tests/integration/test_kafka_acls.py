"""Least privilege on a broker that authorizes: the operator's KafkaUsers, made real in Apache
Kafka, let a whole saga complete with each service on its own credentials, and a command from
any client but the orchestrator is refused by the broker.

Apache Kafka runs with an authorizing SCRAM listener (StandardAuthorizer, as a Strimzi cluster
with `authorization: simple`); the stand-in for Strimzi's User Operator (`kafka_users.py`) turns
each KafkaUser the operator builds into a SCRAM credential and its ACLs. Each service gets the
Kafka settings the operator puts in its pod, with the password its Secret would hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from sagaline_operator import manifests

from sagaline.domain.definition import SagaDefinition, load_definition
from sagaline.domain.envelope import Envelope
from sagaline.domain.messages import StepTypes
from sagaline.lab.launchers.apache_kafka import ApacheKafka, resolve_jars
from sagaline.lab.stack import Stack
from tests.integration.kafka_users import apply_users
from tests.integration.support import Api, Parts, eventually, require_broker, running_stack

ORDER_YAML = Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml"
KAFKA_POSTGRESQL = Parts("kafka", "postgresql")


def authenticated(definition: SagaDefinition) -> SagaDefinition:
    kafka = definition.spec.kafka.model_dump(by_alias=True, exclude_none=True)
    return definition.with_spec(kafka={**kafka, "authentication": {"type": "scram-sha-512"}})


def pod_kafka_env(
    definition: SagaDefinition, service: str, passwords: dict[str, str], servers: str
) -> dict[str, str]:
    """The Kafka variables of the service's app container as the operator builds them, with
    each Secret reference resolved as the kubelet would (from the user's Secret)."""
    unit = next(u for u in manifests.units(definition) if u.service == service)
    config = manifests.config_map(unit, definition, None)
    app = manifests.deployment(unit, definition, config, None)["spec"]["template"]["spec"]
    env: dict[str, str] = {}
    for variable in app["containers"][0]["env"]:
        if not variable["name"].startswith("KAFKA_"):
            continue
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference is not None:
            assert reference == {"name": unit.name, "key": "password"}
            env[variable["name"]] = passwords[unit.name]
        else:
            env[variable["name"]] = variable["value"]
    env["KAFKA_BOOTSTRAP_SERVERS"] = servers  # the authorizing listener, not the cluster's name
    return env


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[ApacheKafka]:
    require_broker("kafka")
    resolve_jars()
    broker = ApacheKafka(
        log_path=tmp_path / "kafka.log", data_dir=tmp_path / "kafka", authorizing=True
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def produce_as(
    kafka: ApacheKafka, user: str, password: str, topic: str, envelope: Envelope
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.sasl_bootstrap_servers,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=password,
        acks="all",
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, envelope.encode(), key=envelope.key)
    finally:
        await producer.stop()


@pytest.fixture
def authorized_stack(
    kafka: ApacheKafka, tmp_path: Path, postgres_server: str
) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A stack whose every service uses its own KafkaUser; with the passwords by user."""
    definition = authenticated(load_definition(ORDER_YAML))
    passwords = apply_users(kafka.bootstrap_servers, manifests.kafka_users(definition))
    service_env = {
        unit.service: pod_kafka_env(
            definition, unit.service, passwords, kafka.sasl_bootstrap_servers
        )
        for unit in manifests.units(definition)
    }
    assert service_env["payment"]["KAFKA_SASL_USERNAME"] == "payment-service"
    with running_stack(
        tmp_path / "stack",
        KAFKA_POSTGRESQL,
        server_url=postgres_server,
        bootstrap_servers=kafka.bootstrap_servers,  # the platform's listener creates the topics
        extra_env={"SAGALINE_CREATE_TOPICS": "false"},  # as on Kubernetes: no Create permission
        service_env=service_env,
    ) as stack:
        yield stack, passwords


async def test_each_service_on_its_own_user_completes_a_saga_and_only_the_orchestrator_commands(
    kafka: ApacheKafka, authorized_stack: tuple[Stack, dict[str, str]]
) -> None:
    stack, passwords = authorized_stack
    async with httpx.AsyncClient(timeout=10) as client:
        api = Api(stack, client)
        customer = await api.account("100.00")
        product = await api.product(5)
        order = await api.order(customer, (product, 1, "10.00"))
        decided = await api.decided(order["id"], within=60)
        assert decided["status"] == "APPROVED", decided
        assert await api.balance(customer) == "90.00"

        # A forged charge, well formed, from every client but the orchestrator: refused.
        victim = await api.account("50.00")
        forged = Envelope(
            type=StepTypes("payment").command,
            saga_id=uuid.uuid4(),
            saga="order",
            step="payment",
            payload={"customer_id": victim, "total_cents": 5000},
        )
        for user in ("order-service", "payment-service", "stock-service"):
            with pytest.raises(TopicAuthorizationFailedError):
                await produce_as(kafka, user, passwords[user], "payment", forged)
        with pytest.raises(KafkaError):  # and a wrong password does not log in at all
            await produce_as(kafka, "order-orchestrator", "guess", "payment", forged)
        assert await api.balance(victim) == "50.00"

        # The orchestrator's own credentials may (the refusals above are the ACLs' doing).
        genuine = forged.model_copy(update={"id": uuid.uuid4()})
        await produce_as(
            kafka, "order-orchestrator", passwords["order-orchestrator"], "payment", genuine
        )

        async def charged() -> bool:
            return await api.balance(victim) == "0.00"

        await eventually(charged, within=30, what="the orchestrator's command to take effect")
