"""Every Kafka client's security from its environment (shared/kafka_security.py): a service's
prefixed variables, the tools' BROADCAST_KAFKA_*, and a clear error naming what is missing."""

import ssl
from pathlib import Path

import pytest
from faststream.security import SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.tracker.settings import Settings as TrackerSettings
from shared.kafka import make_broker
from shared.kafka_security import KafkaSecurity, tool_security


def test_plaintext_by_default_with_no_options() -> None:
    security = TrackerSettings().kafka_security()
    assert not security.authenticated
    assert security.client_options() == {}
    assert security.for_faststream() is None


def test_a_service_reads_its_own_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TRACKER_KAFKA_SASL_USERNAME", "tracker")
    monkeypatch.setenv("TRACKER_KAFKA_SASL_PASSWORD", "s3cret-scram")
    monkeypatch.setenv("COMPOSER_KAFKA_SASL_USERNAME", "composer")
    options = TrackerSettings().kafka_security().client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "tracker"
    assert options["sasl_plain_password"] == "s3cret-scram"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    # The broker's certificate is checked, its name included.
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_without_credentials_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TRACKER_KAFKA_SASL_USERNAME", "tracker")
    with pytest.raises(ValidationError) as refused:
        TrackerSettings()
    assert "set TRACKER_KAFKA_SASL_PASSWORD (the client's SCRAM credentials)" in str(refused.value)


def test_an_unknown_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # SASL_PLAINTEXT would send the password in clear: not offered.
    monkeypatch.setenv("TRACKER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        TrackerSettings()


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"BROADCAST_KAFKA_SSL_CAFILE: no such file"):
        tool_security(
            {
                "BROADCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "BROADCAST_KAFKA_SASL_USERNAME": "cli",
                "BROADCAST_KAFKA_SASL_PASSWORD": "pw",
                "BROADCAST_KAFKA_SSL_CAFILE": str(tmp_path / "absent.pem"),
            }
        )


def test_the_tools_read_broadcast_kafka_from_the_mapping_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROADCAST_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    # The mapping alone counts, not the process's environment.
    assert not tool_security({}).authenticated
    with pytest.raises(ValueError, match="set BROADCAST_KAFKA_SASL_USERNAME and"):
        tool_security()
    monkeypatch.setenv("BROADCAST_KAFKA_SASL_USERNAME", "crm")
    monkeypatch.setenv("BROADCAST_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("BROADCAST_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    security = tool_security()
    assert (security.username, security.mechanism) == ("crm", "SCRAM-SHA-256")


@pytest.mark.parametrize(
    ("mechanism", "kind"), [("SCRAM-SHA-512", SASLScram512), ("SCRAM-SHA-256", SASLScram256)]
)
def test_a_service_broker_gets_fast_streams_scram_object(mechanism: str, kind: type) -> None:
    security = KafkaSecurity(
        protocol="SASL_SSL", mechanism=mechanism, username="svc", password="pw"
    )
    scram = security.for_faststream()
    assert isinstance(scram, kind)
    assert scram is not None
    assert scram.use_ssl and scram.ssl_context is not None


def test_a_service_broker_bootstraps_from_every_listed_server() -> None:
    """A cluster's servers, comma-separated as for aiokafka, reach FastStream one by one (it
    would take the whole string for one host)."""
    settings = TrackerSettings(kafka_bootstrap_servers="127.0.0.1:19092, 127.0.0.1:19094")
    broker = make_broker(settings, service="tracker", registry=CollectorRegistry())
    assert broker._connection_kwargs["bootstrap_servers"] == [
        "127.0.0.1:19092",
        "127.0.0.1:19094",
    ]
