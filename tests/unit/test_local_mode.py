"""Outside local mode a service refuses the development secrets, naming each variable at fault;
in local mode, or with real secrets, it starts (docs/ARCHITECTURE.md, "Secrets")."""

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.local import stack
from shared.local_mode import (
    DEVELOPMENT_DATABASE_PASSWORDS,
    LOCAL_MODE_VARIABLE,
    DevelopmentSecrets,
)

SERVICES = ("targeting", "composer", "dispatcher", "tracker")
STRONG = "k" * 32
PRODUCTION_URL = "postgresql://composer:n0t-a-default@db.internal:5432/broadcast"

# What each service refuses when nothing is set but the defaults.
REFUSED = {
    "targeting": [
        "TARGETING_DATABASE_URL",
        "TARGETING_KAFKA_SECURITY_PROTOCOL",
        "TARGETING_LINK_SECRET",
    ],
    "composer": [
        "COMPOSER_DATABASE_URL",
        "COMPOSER_KAFKA_SECURITY_PROTOCOL",
        "COMPOSER_LINK_SECRET",
    ],
    "dispatcher": [
        "DISPATCHER_DATABASE_URL",
        "DISPATCHER_KAFKA_SECURITY_PROTOCOL",
        "DISPATCHER_SMS_GATEWAY_TOKEN",
    ],
    "tracker": ["TRACKER_DATABASE_URL", "TRACKER_KAFKA_SECURITY_PROTOCOL"],
}
# Authenticated Kafka, as every service outside local mode needs.
SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "svc",
    "kafka_sasl_password": "scram-password",
}


def sasl_variables(name: str) -> dict[str, str]:
    return {f"{name.upper()}_{field.upper()}": value for field, value in SASL.items()}


# What makes each service acceptable outside local mode.
PRODUCTION = {
    "targeting": {"TARGETING_DATABASE_URL": PRODUCTION_URL, "TARGETING_LINK_SECRET": STRONG},
    "composer": {"COMPOSER_DATABASE_URL": PRODUCTION_URL, "COMPOSER_LINK_SECRET": STRONG},
    "dispatcher": {
        "DISPATCHER_DATABASE_URL": PRODUCTION_URL,
        "DISPATCHER_SMS_GATEWAY_TOKEN": "gateway-token",
    },
    "tracker": {"TRACKER_DATABASE_URL": PRODUCTION_URL},
}
for _name, _variables in PRODUCTION.items():
    _variables.update(sasl_variables(_name))


@pytest.fixture(autouse=True)
def not_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs in local mode (tests/conftest.py); these tests start outside it."""
    monkeypatch.delenv(LOCAL_MODE_VARIABLE, raising=False)


def settings(name: str, **values: Any) -> Any:
    return importlib.import_module(f"services.{name}.settings").Settings(**values)


def problems(name: str, **values: Any) -> list[str]:
    with pytest.raises(DevelopmentSecrets) as refused:
        settings(name, **values).refuse_development_secrets()
    return refused.value.problems


@pytest.mark.parametrize("name", SERVICES)
def test_the_defaults_are_refused_naming_each_variable(name: str) -> None:
    found = problems(name)
    assert [p.split()[0] for p in found] == REFUSED[name]
    with pytest.raises(DevelopmentSecrets) as refused:
        settings(name).refuse_development_secrets()
    for line in str(refused.value).splitlines():
        assert line.endswith(f", or {LOCAL_MODE_VARIABLE}=1 for a local stack")


@pytest.mark.parametrize("name", SERVICES)
def test_every_factory_refuses_before_connecting(name: str) -> None:
    # Nothing listens anywhere here: the factory must fail on the secrets, not on a connection.
    app = importlib.import_module(f"services.{name}.app")
    with pytest.raises(DevelopmentSecrets):
        app.create_app(settings(name))


@pytest.mark.parametrize("name", SERVICES)
def test_real_secrets_are_accepted(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in PRODUCTION[name].items():
        monkeypatch.setenv(variable, value)
    settings(name).refuse_development_secrets()
    importlib.import_module(f"services.{name}.app").create_app(settings(name))


@pytest.mark.parametrize("name", SERVICES)
def test_local_mode_accepts_the_defaults(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCAL_MODE_VARIABLE, "1")
    assert settings(name).local_mode
    settings(name).refuse_development_secrets()


def test_local_mode_is_one_unprefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCAL_MODE_VARIABLE, "1")
    assert all(settings(name).local_mode for name in SERVICES)
    monkeypatch.setenv(LOCAL_MODE_VARIABLE, "0")
    assert not any(settings(name).local_mode for name in SERVICES)
    # A prefixed spelling is not the switch: one variable turns every service's checks off.
    monkeypatch.delenv(LOCAL_MODE_VARIABLE)
    monkeypatch.setenv("COMPOSER_LOCAL_MODE", "1")
    assert not settings("composer").local_mode


def test_a_short_link_secret_is_refused() -> None:
    url = {"database_url": PRODUCTION_URL, **SASL}
    assert problems("composer", link_secret="k" * 31, **url) == [
        "COMPOSER_LINK_SECRET is 31 bytes long; set a secret of at least 32 bytes"
    ]
    # Bytes, not characters: 16 two-byte characters are enough.
    settings("composer", link_secret="é" * 16, **url).refuse_development_secrets()


def test_targeting_checks_the_previous_link_secret_too() -> None:
    url = {"database_url": PRODUCTION_URL, **SASL}
    settings("targeting", link_secret=STRONG, **url).refuse_development_secrets()
    for previous in ("local-development-link-secret", "short"):
        found = problems("targeting", link_secret=STRONG, link_previous_secret=previous, **url)
        assert [p.split()[0] for p in found] == ["TARGETING_LINK_PREVIOUS_SECRET"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://broadcast:broadcast@127.0.0.1:15432/broadcast",
        "postgresql://tracker:broadcast@db.internal/broadcast",  # a per-service role's
        "postgres://tracker:%62roadcast@db.internal/broadcast",  # percent-encoded
        "postgresql://tracker@db.internal/broadcast?sslmode=require&password=broadcast",
    ],
)
def test_a_local_database_password_is_refused(url: str) -> None:
    assert problems("tracker", database_url=url, **SASL) == [
        "TRACKER_DATABASE_URL has the local stack's database password; "
        "set the password of the service's own role"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tracker@db.internal/broadcast",  # a password file or PGPASSWORD
        "postgresql://tracker:broadcast2@db.internal/broadcast",
        "postgresql://broadcast:s3cret@db.internal/broadcast",  # the user is not the password
    ],
)
def test_other_database_urls_are_accepted(url: str) -> None:
    settings("tracker", database_url=url, **SASL).refuse_development_secrets()


def test_the_sms_token_is_checked_only_for_the_http_gateway() -> None:
    url = {"database_url": PRODUCTION_URL, **SASL}
    assert problems("dispatcher", sms_gateway_token="", **url) == [
        "DISPATCHER_SMS_GATEWAY_TOKEN is empty; set the gateway's token"
    ]
    twilio = settings(
        "dispatcher",
        sms_provider="twilio",
        twilio_account_sid="AC1",
        twilio_auth_token="twilio-token",
        **url,
    )
    twilio.refuse_development_secrets()


def test_the_local_runner_starts_every_service_in_local_mode() -> None:
    components = stack.components()
    for name in SERVICES:
        assert components[name].env[LOCAL_MODE_VARIABLE] == "1"
    # Its database password is one the services refuse outside local mode.
    assert stack.POSTGRES_PASSWORD in DEVELOPMENT_DATABASE_PASSWORDS


def test_a_service_started_as_deployed_exits_naming_the_variable() -> None:
    """`faststream run --factory`, as the runner and docker-compose start it, outside local mode:
    it exits before connecting (nothing listens on the addresses it would use)."""
    env = {k: v for k, v in os.environ.items() if k != LOCAL_MODE_VARIABLE and "TRACKER_" not in k}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "faststream"),
            "run",
            "--factory",
            "services.tracker.app:create_app",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        env={**env, "COLUMNS": "200"},
    )
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())
    assert (
        "TRACKER_DATABASE_URL has the local stack's database password; set the password of the "
        "service's own role, or BROADCAST_LOCAL_MODE=1 for a local stack"
    ) in output


def test_the_return_path_secrets_are_checked_once_they_sign_or_verify() -> None:
    url = {"database_url": PRODUCTION_URL, **SASL}
    # No bounce domain: nothing is signed with the secret, so its default is harmless.
    settings("composer", link_secret=STRONG, **url).refuse_development_secrets()
    found = problems("composer", link_secret=STRONG, return_path_domain="bounces.example", **url)
    assert [p.split()[0] for p in found] == ["COMPOSER_RETURN_PATH_SECRET"]
    receiving = {"bounce_smtp_port": 2525, "return_path_domain": "bounces.example"}
    gateway = {"sms_gateway_token": "gateway-token", **url}
    found = problems("dispatcher", return_path_previous_secret="short", **receiving, **gateway)
    assert [p.split()[0] for p in found] == [
        "DISPATCHER_RETURN_PATH_SECRET",
        "DISPATCHER_RETURN_PATH_PREVIOUS_SECRET",
    ]
    settings(
        "dispatcher", return_path_secret=STRONG, **receiving, **gateway
    ).refuse_development_secrets()


def test_the_bounce_receiver_needs_the_bounce_domain() -> None:
    with pytest.raises(ValueError, match="return_path_domain"):
        settings("dispatcher", bounce_smtp_port=2525)
