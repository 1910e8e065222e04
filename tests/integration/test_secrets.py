"""No secret in a log line or an HTTP error body.

A stack runs on PostgreSQL with a password in its URL (trust auth accepts and ignores it), an API
token, and SASL credentials in every process's environment. Traffic includes successes and
failures of every kind; then a service is pointed at a broker that refuses its SASL login, and
the CLI at a database it cannot reach. Every process log, every CLI output and every error body
is searched for each secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from sagaline.lab.launchers.embedded_broker import EmbeddedBroker
from sagaline.lab.ports import free_port, free_port_block
from sagaline.lab.stack import Stack
from sagaline.services.registry import SERVICES
from tests.integration.support import Parts, running_stack

DB_PASSWORD = f"dbpw-{uuid.uuid4().hex[:12]}"
API_TOKEN = f"token-{uuid.uuid4().hex}"
SASL_PASSWORD = f"saslpw-{uuid.uuid4().hex[:12]}"
SECRETS = {"database password": DB_PASSWORD, "API token": API_TOKEN, "SASL password": SASL_PASSWORD}
SASL_ENV = {
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "KAFKA_SASL_USERNAME": "sagaline",
    "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Stack]:
    """On PostgreSQL, whose URL carries a password (trust auth accepts and ignores it)."""
    with running_stack(
        tmp_path_factory.mktemp("secrets"),
        Parts("embedded", "postgresql"),
        database_url=make_url(postgres_server)
        .set(password=DB_PASSWORD)
        .render_as_string(hide_password=False),
        api_token=API_TOKEN,
        extra_env=SASL_ENV,  # carried by every process, unused on the PLAINTEXT broker
    ) as running:
        yield running


def drive_traffic(stack: Stack) -> list[str]:
    """Successes and failures of every kind; returns every error response, headers and body."""
    errors: list[str] = []
    auth = {"Authorization": f"Bearer {API_TOKEN}"}

    def url(service: str, path: str) -> str:
        return f"{stack.service_url(service)}{path}"

    with httpx.Client(timeout=10) as http:

        def call(method: str, target: str, **kwargs: object) -> httpx.Response:
            response = http.request(method, target, **kwargs)  # type: ignore[arg-type]
            if response.status_code >= 400:
                errors.append(f"{response.status_code} {response.headers} {response.text}")
            return response

        customer, product = f"c-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
        assert call("POST", url("payment", "/accounts"), headers=auth,
                    json={"id": customer, "balance": "5.00"}).status_code == 201  # fmt: skip
        assert call("POST", url("stock", "/products"), headers=auth,
                    json={"id": product, "quantity": 3}).status_code == 201  # fmt: skip
        for quantity, price in ((1, "1.00"), (1, "100.00"), (9, "0.10")):  # ok, no funds, no stock
            order = {
                "customer_id": customer,
                "items": [{"product_id": product, "quantity": quantity, "unit_price": price}],
            }
            assert (
                call("POST", url("order", "/orders"), headers=auth, json=order).status_code == 201
            )
        assert call("POST", url("order", "/orders"), json={}).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert call("POST", url("payment", "/accounts"), headers=wrong, json={}).status_code == 401
        assert call("POST", url("order", "/orders"), headers=auth,
                    json={"customer_id": "", "items": []}).status_code == 422  # fmt: skip
        assert call("POST", url("order", "/orders"), headers=auth, content=b"{",
                    ).status_code in (400, 422)  # fmt: skip
        assert call("POST", url("payment", "/accounts"), headers=auth,
                    json={"id": customer, "balance": "1"}).status_code == 409  # fmt: skip
        assert call("POST", url("stock", "/products"), headers=auth,
                    content=b"x" * 70_000).status_code == 413  # fmt: skip
        assert call("GET", url("orchestrator", f"/sagas/{uuid.uuid4()}")).status_code == 404
        assert call("GET", url("order", "/orders/not-a-uuid")).status_code == 422
    return errors


def refused_sasl_login(stack: Stack, log: Path) -> str:
    """A payment service whose broker refuses its SASL login: its log and its /readyz body."""
    broker = EmbeddedBroker(log_path=stack.logs / "guarded-broker.log", authentication=True)
    broker.start()
    port = free_port()
    env = stack.environment("payment") | {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    }
    argv = [sys.executable, "-m", "sagaline", "serve", "payment", "--port", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        readyz = ""
        with httpx.Client(timeout=2) as http:
            for _ in range(200):  # at most ~20 s: until the refusal is logged and served
                if "Kafka login refused" in log.read_text(errors="replace"):
                    readyz = http.get(f"http://127.0.0.1:{port}/readyz").text
                    break
                try:
                    process.wait(timeout=0.1)
                    break  # it exited: the assertion below shows its log
                except subprocess.TimeoutExpired:
                    pass
        assert "Kafka login refused" in log.read_text(errors="replace"), log.read_text()
        assert "unreachable" in readyz
        return readyz
    finally:
        process.terminate()
        process.wait(timeout=10)
        broker.stop()


def unreachable_database(tmp: Path) -> str:
    """`sagaline up` against a PostgreSQL URL whose server does not answer: what it prints."""
    url = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{free_port()}"
    base_port = free_port_block(len(SERVICES))
    options = ["--database-url", url, "--state-dir", str(tmp), "--base-port", str(base_port)]
    result = subprocess.run(
        [sys.executable, "-m", "sagaline", "up", *options],
        env=os.environ | {"COLUMNS": "200"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    said = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 1 and "cannot reach the database" in said, said
    return said


def test_no_secret_in_any_log_line_or_error_body(stack: Stack, tmp_path: Path) -> None:
    assert DB_PASSWORD in stack.urls["order"]  # the processes really hold every secret
    assert stack.environment("order")["SAGALINE_API_TOKEN"] == API_TOKEN
    assert stack.environment("order")["KAFKA_SASL_PASSWORD"] == SASL_PASSWORD
    errors = drive_traffic(stack)
    readyz = refused_sasl_login(stack, stack.logs / "payment-sasl.log")
    cli = unreachable_database(tmp_path / "unreachable")
    stack.stop()  # shutdown lines are logged too

    assert {error.split()[0] for error in errors} >= {"401", "404", "409", "413", "422"}
    logs = {path.name: path.read_text(errors="replace") for path in stack.logs.glob("*.log")}
    assert {"order.log", "payment-relay.log", "broker.log", "payment-sasl.log"} <= set(logs)
    searched = {**logs, "error bodies": "\n".join(errors), "readyz": readyz, "cli": cli}
    leaks = [
        f"{what} in {where}"
        for where, content in searched.items()
        for what, secret in SECRETS.items()
        if secret in content
    ]
    assert not leaks, leaks
