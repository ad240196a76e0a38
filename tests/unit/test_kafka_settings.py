"""The producer settings each service's broker is built with."""

from prometheus_client import CollectorRegistry

from services.composer.settings import Settings as ComposerSettings
from services.dispatcher.settings import Settings as DispatcherSettings
from services.targeting.settings import Settings as TargetingSettings
from services.tracker.settings import Settings as TrackerSettings
from shared.kafka import make_broker
from shared.settings import ServiceSettings


def producer_options(settings: ServiceSettings) -> dict[str, object]:
    broker = make_broker(settings, service="any", registry=CollectorRegistry())
    options: dict[str, object] = broker._connection_kwargs
    return options


def test_the_services_with_large_records_compress_them_and_the_others_do_not() -> None:
    assert producer_options(ComposerSettings())["compression_type"] == "zstd"
    assert producer_options(TargetingSettings())["compression_type"] == "zstd"
    assert producer_options(DispatcherSettings())["compression_type"] is None
    assert producer_options(TrackerSettings())["compression_type"] is None


def test_compression_is_a_setting() -> None:
    assert producer_options(ComposerSettings(kafka_compression=None))["compression_type"] is None
    options = producer_options(DispatcherSettings(kafka_compression="lz4"))
    assert (options["compression_type"], options["acks"], options["enable_idempotence"]) == (
        "lz4",
        "all",
        True,
    )
