"""Kafka security settings: read from the environment, mapped onto aiokafka's options, never
echoed."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from sagaline.kafka.security import KafkaSecurity
from sagaline.settings import Settings

SASL_PASSWORD = "sasl-pw-5e1f0c"
DB_PASSWORD = "db-pw-77ab20"


def test_plaintext_is_the_default_and_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "SAGALINE_KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().kafka_security().client_options() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("prefix", ["KAFKA_", "SAGALINE_KAFKA_"])
def test_sasl_settings_become_client_options(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv(f"{prefix}SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv(f"{prefix}SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv(f"{prefix}SASL_USERNAME", "sagaline")
    monkeypatch.setenv(f"{prefix}SASL_PASSWORD", SASL_PASSWORD)

    options = Settings().kafka_security().client_options()

    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "sagaline",
        "sasl_plain_password": SASL_PASSWORD,
    }


def test_secrets_stay_out_of_reprs_and_descriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{DB_PASSWORD}@db:5432/orderdb")
    monkeypatch.setenv("SAGALINE_API_TOKEN", "token-9c1d")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "sagaline")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SASL_PASSWORD)

    settings = Settings()
    shown = repr(settings) + str(settings) + settings.kafka_security().describe()

    for secret in (DB_PASSWORD, "token-9c1d", SASL_PASSWORD):
        assert secret not in shown
    assert settings.kafka_security().describe() == "SASL_SSL SCRAM-SHA-256 as 'sagaline'"
    assert DB_PASSWORD in settings.database  # what the driver gets is whole


def test_incomplete_sasl_settings_name_what_is_missing_without_echoing_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{DB_PASSWORD}@db:5432/orderdb")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)

    with pytest.raises(ValidationError) as raised:
        Settings()

    message = str(raised.value)
    assert "SASL_SSL needs KAFKA_SASL_USERNAME" in message
    assert SASL_PASSWORD not in message and DB_PASSWORD not in message


def test_an_unknown_mechanism_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValidationError, match="KAFKA_SASL_MECHANISM") as raised:
        Settings()
    assert "'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'" in str(raised.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_settings_build_a_verifying_context_with_the_client_certificate(
    tmp_path: Path,
) -> None:
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    request = [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=sagaline-test",
    ]
    subprocess.run(
        ["openssl", *request, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    security = KafkaSecurity(protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key)

    options = security.client_options()

    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "sagaline-test"} in subjects


def test_a_key_without_its_certificate_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE"):
        KafkaSecurity(protocol="SSL", ssl_keyfile=Path("client.key"))
