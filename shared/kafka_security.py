"""How every Kafka client of the system authenticates: SASL/SCRAM over TLS, or plaintext locally.

One definition for the services (`TARGETING_KAFKA_SECURITY_PROTOCOL`, ...) and the tools (the
CLI, the client library, the importer: `BROADCAST_KAFKA_SECURITY_PROTOCOL`, ...), turned into
FastStream's security object for a service's broker and into aiokafka's options for every
other client (admin, readiness, lag, a client's producer and its answer log).

Only two protocols: PLAINTEXT, for a local stack (refused outside local mode, since anyone who
reaches such a broker may speak for any tenant), and SASL_SSL, so a password never crosses the
network in clear and the broker's certificate is checked.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["PLAINTEXT", "SASL_SSL"]
TOOL_PREFIX = "BROADCAST_"
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]


class KafkaSecurity(BaseModel):
    """How one client connects; built by `KafkaClientSettings.kafka_security`."""

    model_config = {"frozen": True}

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    # The CA that signed the brokers' certificates; None trusts the system's store.
    cafile: Path | None = None

    @property
    def authenticated(self) -> bool:
        return self.protocol != "PLAINTEXT"

    def _ssl_context(self) -> ssl.SSLContext:
        # Hostname checking stays on: a broker is who its certificate says it is.
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(self.cafile) if self.cafile else None
        )
        return context

    def client_options(self) -> dict[str, Any]:
        """aiokafka's keyword arguments (producer, consumer, admin client)."""
        if not self.authenticated:
            return {}
        assert self.username is not None and self.password is not None  # checked by the settings
        return {
            "security_protocol": self.protocol,
            "ssl_context": self._ssl_context(),
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }

    def for_faststream(self) -> BaseSecurity | None:
        """FastStream's security object for a service's KafkaBroker (None: plaintext)."""
        if not self.authenticated:
            return None
        assert self.username is not None and self.password is not None  # checked by the settings
        scram = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
        return scram(
            self.username,
            self.password.get_secret_value(),
            ssl_context=self._ssl_context(),
            use_ssl=True,
        )


class KafkaClientSettings(BaseModel):
    """The settings fields of a Kafka client, inherited by each service's settings (prefixed
    with the service's name) and by `ToolKafkaSettings` (prefixed BROADCAST_)."""

    kafka_security_protocol: Protocol = "PLAINTEXT"
    kafka_sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    @model_validator(mode="after")
    def _credentials_with_sasl(self) -> Self:
        if self.kafka_security_protocol == "PLAINTEXT":
            return self
        prefix = str(self.model_config.get("env_prefix", "")).upper()
        missing = [
            f"{prefix}{field.upper()}"
            for field in ("kafka_sasl_username", "kafka_sasl_password")
            if not getattr(self, field)
        ]
        if missing:
            raise ValueError(
                f"{prefix}KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}: "
                f"set {' and '.join(missing)} (the client's SCRAM credentials)"
            )
        if self.kafka_ssl_cafile is not None and not self.kafka_ssl_cafile.is_file():
            raise ValueError(f"{prefix}KAFKA_SSL_CAFILE: no such file: {self.kafka_ssl_cafile}")
        return self

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            cafile=self.kafka_ssl_cafile,
        )

    def plaintext_kafka_problem(self) -> str | None:
        """Why this client's Kafka may not be used outside local mode: unauthenticated."""
        if self.kafka_security_protocol != "PLAINTEXT":
            return None
        prefix = str(self.model_config.get("env_prefix", "")).upper()
        return (
            f"{prefix}KAFKA_SECURITY_PROTOCOL is PLAINTEXT: anyone who reaches the broker may "
            f"speak for any tenant; set SASL_SSL with {prefix}KAFKA_SASL_USERNAME and "
            f"{prefix}KAFKA_SASL_PASSWORD"
        )


class ToolKafkaSettings(KafkaClientSettings, BaseSettings):
    """The tools' Kafka security: BROADCAST_KAFKA_SECURITY_PROTOCOL, BROADCAST_KAFKA_SASL_*."""

    model_config = SettingsConfigDict(env_prefix=TOOL_PREFIX, frozen=True, extra="ignore")


class _ToolKafkaFields(KafkaClientSettings):
    """The same fields read from a mapping alone (a BaseSettings would read the environment)."""

    model_config = ConfigDict(env_prefix=TOOL_PREFIX, frozen=True)  # type: ignore[typeddict-unknown-key]


def tool_security(environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The security of a tool's clients, read from `environ` (default: the process's
    environment) on each call. A bad value raises ValueError naming its variable."""
    if environ is None:
        return ToolKafkaSettings().kafka_security()
    values = {
        name.removeprefix(TOOL_PREFIX).lower(): value
        for name, value in environ.items()
        if name.startswith(f"{TOOL_PREFIX}KAFKA_") and value
    }
    return _ToolKafkaFields.model_validate(values).kafka_security()
