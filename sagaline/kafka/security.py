"""How every Kafka client of a process authenticates: TLS and SASL settings for aiokafka.

One value built from the settings and handed to every producer, consumer and admin client, so
a process never has one client on PLAINTEXT and another on SASL_SSL.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseModel):
    """The security settings of the Kafka clients (PLAINTEXT, the default, needs none)."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.sasl:
            missing = [
                name
                for name, value in (
                    ("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.sasl_password),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"{self.protocol} needs {', '.join(missing)}")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE")
        return self

    def describe(self) -> str:
        """For log lines and errors: the protocol, mechanism and user, never the password."""
        if self.sasl:
            return f"{self.protocol} {self.sasl_mechanism} as {self.sasl_username!r}"
        return self.protocol

    def ssl_context(self) -> ssl.SSLContext:
        password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
        return create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=password,
        )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments shared by AIOKafkaProducer, AIOKafkaConsumer and the admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            assert self.sasl_password is not None  # checked by the validator
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        return options


PLAINTEXT = KafkaSecurity()
