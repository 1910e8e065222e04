"""Kafka security: SASL/SCRAM end to end, and what the embedded broker's own authentication does.

Tansu 0.6 cannot hold a SCRAM user (docs/operations.md, "Kafka security"), so the SCRAM logins
are served by a SCRAM-terminating proxy in front of the real embedded broker (`scram_proxy.py`):
the system's own clients (relay, producers, consumers, admin, a whole stack) log in with
SCRAM-SHA-256 or SCRAM-SHA-512 over SASL_PLAINTEXT and the proxy's record shows every login, so
a client that skipped SASL would be caught. The broker's own `--authentication` is tested for
what it does do: refuse a client that does not log in.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import SecretStr

from sagaline.delivery.outbox import send_raw
from sagaline.delivery.relay.loop import Relay
from sagaline.kafka.clients import (
    KafkaAuthError,
    ensure_topics,
    make_consumer,
    make_producer,
    start,
)
from sagaline.kafka.security import KafkaSecurity, SaslMechanism
from sagaline.lab.launchers.embedded_broker import BrokerError, EmbeddedBroker
from sagaline.lab.stack import Stack
from sagaline.registration import find, upgrade
from sagaline.storage.db import Database
from tests.integration.scram_proxy import Login, ScramProxy, scram_broker
from tests.integration.support import EMBEDDED_SQLITE, Api, eventually, running_stack

USER = "sagaline"
PASSWORD = "scram-pw-3d9a41"
STACK_USER = "sagaline-stack"
STACK_PASSWORD = f"scram-stack-{uuid.uuid4().hex[:12]}"
USERS = {USER: PASSWORD, STACK_USER: STACK_PASSWORD}


def scram(
    password: str, mechanism: SaslMechanism = "SCRAM-SHA-256", user: str = USER
) -> KafkaSecurity:
    return KafkaSecurity(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=SecretStr(password),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScramProxy]:
    """The embedded broker behind the SCRAM proxy, which knows USERS."""
    with scram_broker(USERS, tmp_path_factory.mktemp("scram") / "broker.log") as serving:
        yield serving


class Watch:
    """The proxy's logins and refusals since this was made."""

    def __init__(self, proxy: ScramProxy) -> None:
        self.proxy = proxy
        self.first_login = len(proxy.logins)
        self.first_refusal = len(proxy.refusals)

    def logins(self) -> list[Login]:
        return self.proxy.logins[self.first_login :]

    def assert_only_logins(self, mechanism: str, user: str = USER) -> None:
        logins = self.logins()
        assert logins, "the proxy saw no login: the clients did not use SASL"
        assert {(x.user, x.mechanism, x.succeeded) for x in logins} == {(user, mechanism, True)}
        assert self.proxy.refusals[self.first_refusal :] == []


# -- SCRAM through the proxy ----------------------------------------------------------------------


async def test_a_relay_publishes_over_scram_sha_256(proxy: ScramProxy, tmp_path: Path) -> None:
    servers, security, topic = proxy.bootstrap_servers, scram(PASSWORD), unique("sasl256")
    watch = Watch(proxy)
    url = f"sqlite:///{tmp_path / 'paymentdb.db'}"
    await asyncio.to_thread(upgrade, find("payment"), url)
    db = Database(url)
    relay = Relay(
        db,
        service="payment",
        bootstrap_servers=servers,
        create_topics=[topic],
        partitions=1,
        security=security,
        broker="embedded",
    )
    task = asyncio.create_task(relay.run())
    key = str(uuid.uuid4()).encode()
    consumer = make_consumer(
        servers, unique("reader"), [topic], fetch_max_wait_ms=20, security=security
    )
    try:
        async with db.transaction() as session:
            send_raw(session, topic=topic, key=key, value=b"{}", headers=[])
        await start(consumer, security, servers)

        async def published() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            return any(r.key == key for part in batches.values() for r in part)

        await eventually(published, within=20, what="the relay's record over SCRAM")
    finally:
        relay.stop()
        await asyncio.wait_for(task, timeout=10)
        await consumer.stop()
        await db.dispose()
    watch.assert_only_logins("SCRAM-SHA-256")


async def roundtrip(servers: str, security: KafkaSecurity) -> None:
    """Create a topic, produce to it and consume it back, every client with `security`."""
    topic = unique("sasl")
    created = await ensure_topics(servers, [topic], partitions=1, replicas=1, security=security)
    assert created == [topic]
    producer = make_producer(servers, security)
    consumer = make_consumer(servers, unique("g"), [topic], fetch_max_wait_ms=20, security=security)
    try:
        await start(producer, security, servers)
        await producer.send_and_wait(topic, b"value", key=b"key")
        await start(consumer, security, servers)

        async def consumed() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            return any(r.value == b"value" for part in batches.values() for r in part)

        await eventually(consumed, within=15, what=f"the record on {topic}")
    finally:
        await producer.stop()
        await consumer.stop()


async def test_clients_produce_and_consume_over_scram_sha_512(proxy: ScramProxy) -> None:
    watch = Watch(proxy)
    await roundtrip(proxy.bootstrap_servers, scram(PASSWORD, "SCRAM-SHA-512"))
    watch.assert_only_logins("SCRAM-SHA-512")


async def test_the_legacy_sasl_handshake_v0_path_also_logs_in(tmp_path: Path) -> None:
    """A broker offering SaslHandshake v0 only: aiokafka sends the SCRAM messages as bare frames."""
    with scram_broker(USERS, tmp_path / "broker.log", legacy_handshake_only=True) as legacy:
        watch = Watch(legacy)
        await roundtrip(legacy.bootstrap_servers, scram(PASSWORD))
    watch.assert_only_logins("SCRAM-SHA-256")
    assert {x.handshake_version for x in watch.logins()} == {0}


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [(USER, "bad-8c1e-pw", "invalid-proof"), ("nobody", PASSWORD, "unknown-user")],
    ids=["wrong-password", "unknown-user"],
)
async def test_a_refused_scram_login_is_refused_without_the_password(
    proxy: ScramProxy, caplog: pytest.LogCaptureFixture, user: str, password: str, reason: str
) -> None:
    servers, watch = proxy.bootstrap_servers, Watch(proxy)
    with caplog.at_level(logging.DEBUG), pytest.raises(KafkaError) as raised:
        await ensure_topics(
            servers, ["t"], partitions=1, replicas=1, security=scram(password, user=user)
        )

    # The bootstrap's attempt, then start()'s own, which tells a refusal from an outage.
    logins = watch.logins()
    assert logins
    for login in logins:
        assert (login.user, login.mechanism, login.succeeded) == (user, "SCRAM-SHA-256", False)
        assert reason in login.reason
    assert isinstance(raised.value, KafkaAuthError)
    assert password not in str(raised.value)
    assert password not in caplog.text
    # aiokafka logs the broker's answer (error 58 and its message) before giving up.
    assert "SaslAuthenticationFailed" in caplog.text


async def test_a_wrong_password_is_one_clear_kafka_auth_error(proxy: ScramProxy) -> None:
    await refused_login(proxy.bootstrap_servers, "bad-7f2a")


async def refused_login(servers: str, password: str) -> str:
    """Log in as USER with `password`: one KafkaAuthError naming who, not the password."""
    with pytest.raises(KafkaAuthError) as raised:
        await ensure_topics(servers, ["t"], partitions=1, replicas=1, security=scram(password))

    message = str(raised.value)
    assert f"Kafka login refused at {servers}" in message
    assert "SASL_PLAINTEXT SCRAM-SHA-256 as 'sagaline'" in message
    assert password not in message
    return message


async def test_a_client_without_sasl_is_cut_off_by_the_proxy(proxy: ScramProxy) -> None:
    watch = Watch(proxy)
    with pytest.raises(KafkaConnectionError):
        await ensure_topics(proxy.bootstrap_servers, ["t"], partitions=1, replicas=1)

    assert watch.logins() == []
    refused = proxy.refusals[watch.first_refusal :]
    assert refused and {r.api_key for r in refused} == {3}  # Metadata, after ApiVersions


# -- a whole stack over SCRAM ---------------------------------------------------------------------


@pytest.fixture
def stack_over_scram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, ScramProxy]]:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": STACK_USER,
        "KAFKA_SASL_PASSWORD": STACK_PASSWORD,
    }
    for name, value in env.items():  # `sagaline up` creates the topics with its own settings
        monkeypatch.setenv(name, value)
    with (
        scram_broker(USERS, tmp_path / "broker.log") as serving,
        running_stack(
            tmp_path / "stack",
            EMBEDDED_SQLITE,
            bootstrap_servers=serving.bootstrap_servers,
            extra_env=env,
        ) as stack,
    ):
        yield stack, serving


async def test_a_whole_stack_approves_an_order_over_scram(
    stack_over_scram: tuple[Stack, ScramProxy], client: httpx.AsyncClient
) -> None:
    stack, serving = stack_over_scram
    api = Api(stack, client)
    customer, product = await api.account("10.00"), await api.product(3)
    order = await api.order(customer, (product, 2, "1.50"))

    assert (await api.decided(order["id"], within=20))["status"] == "APPROVED"
    assert await api.balance(customer) == "7.00"
    assert await api.stock(product) == 1
    # Every connection of every process (services, relays, `sagaline up`) logged in.
    assert serving.refusals == []
    logins = serving.logins
    assert {(x.user, x.mechanism, x.succeeded) for x in logins} == {
        (STACK_USER, "SCRAM-SHA-512", True)
    }
    assert len(logins) >= 1 + 4  # the topic creation, then at least one per service
    for name in stack.processes:
        assert STACK_PASSWORD not in (stack.logs / f"{name}.log").read_text(errors="replace")


# -- the embedded broker's own authentication -----------------------------------------------------


@pytest.fixture(scope="module")
def guarded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("guarded") / "broker.log"
    broker = EmbeddedBroker(log_path=log, authentication=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_client_that_does_not_log_in_is_refused(guarded_broker: EmbeddedBroker) -> None:
    with pytest.raises(KafkaConnectionError):
        await ensure_topics(guarded_broker.bootstrap_servers, ["t"], partitions=1, replicas=1)


async def test_a_scram_login_the_broker_cannot_check_is_one_clear_error(
    guarded_broker: EmbeddedBroker,
) -> None:
    """Tansu answers any SCRAM login with `e=unknown-user` (error 0), which aiokafka reads as a
    KeyError; `start` names it."""
    message = await refused_login(guarded_broker.bootstrap_servers, "bad-8c1e")
    assert "unknown user or wrong password" in message


async def test_a_consumer_refused_by_the_broker_raises_the_same_error(
    guarded_broker: EmbeddedBroker,
) -> None:
    security = scram(PASSWORD)
    consumer = make_consumer(
        guarded_broker.bootstrap_servers, "g", ["t"], fetch_max_wait_ms=20, security=security
    )
    try:
        with pytest.raises(KafkaAuthError, match="as 'sagaline'"):
            await start(consumer, security, guarded_broker.bootstrap_servers)
    finally:
        await consumer.stop()


def test_tansu_cannot_be_given_a_scram_user(guarded_broker: EmbeddedBroker) -> None:
    """Why the proxy: `tansu user create` does not log in, so an authenticating Tansu 0.6 refuses
    it (and its memory storage would not keep the user anyway; docs/operations.md, "Kafka
    security")."""
    with pytest.raises(BrokerError, match="refused to create SCRAM user 'sagaline'") as raised:
        guarded_broker.create_user(USER, "SCRAM-SHA-256", PASSWORD)
    assert PASSWORD not in str(raised.value)
