"""The local runner's broker configuration (deploy/local/stack/kafka_secure.py): plaintext by
default; with BROADCAST_KAFKA_SECURE=1, authenticated listeners, the authorizer refusing what no
ACL allows, a SCRAM user per principal, and each service given its own."""

import stat
from pathlib import Path

import pytest

from deploy.local.stack import components
from deploy.local.stack.kafka_secure import (
    CONTROLLER,
    OPERATOR,
    SECURE_VARIABLE,
    Secrets,
    format_options,
    listeners,
    principals,
)


def properties(block: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.splitlines())


def test_plaintext_by_default() -> None:
    block = properties(listeners(19092, 19093, None))
    assert block["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert "authorizer.class.name" not in block


def test_every_principal_is_a_user() -> None:
    assert principals('{"crm": ["a"], "ops": "*"}') == (
        OPERATOR,
        "targeting",
        "composer",
        "dispatcher",
        "tracker",
        "platform",
        "crm",
        "ops",
    )


def test_the_secure_broker_authenticates_and_authorises(tmp_path: Path) -> None:
    files = Secrets(tmp_path)
    passwords = files.ensure(principals())
    block = properties(listeners(29092, 29093, files))
    assert block["listener.security.protocol.map"] == "BROKER:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert block["authorizer.class.name"].endswith("StandardAuthorizer")
    assert block["allow.everyone.if.no.acl.found"] == "false"
    assert block["super.users"] == f"User:{OPERATOR};User:{CONTROLLER}"
    # The controller's password is PLAIN's, never a SCRAM user's.
    options = format_options(passwords)
    assert not any(f"name={CONTROLLER}," in o for o in options)
    assert f"SCRAM-SHA-512=[name=platform,password={passwords['platform']}]" in options
    # The secrets are the owner's only, and kept across starts.
    assert stat.S_IMODE(files.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.keystore.stat().st_mode) == 0o600
    assert files.ensure(principals()) == passwords
    assert "BEGIN CERTIFICATE" in files.ca.read_text()


def test_each_service_speaks_as_its_own_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROADCAST_RUN_DIR", str(tmp_path))
    monkeypatch.setenv(SECURE_VARIABLE, "1")
    table = components()
    passwords = Secrets(tmp_path / "kafka").passwords()
    for name in ("targeting", "composer", "dispatcher", "tracker"):
        env = table[name].env
        prefix = name.upper()
        assert env[f"{prefix}_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env[f"{prefix}_KAFKA_SASL_USERNAME"] == name
        assert env[f"{prefix}_KAFKA_SASL_PASSWORD"] == passwords[name]
    assert table["kafka"].after_start is not None  # the ACLs, once it answers
    monkeypatch.delenv(SECURE_VARIABLE)
    assert "TRACKER_KAFKA_SECURITY_PROTOCOL" not in components()["tracker"].env
