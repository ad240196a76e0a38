"""The producer settings each service's broker is built with."""

from prometheus_client import CollectorRegistry

from services.composer.settings import Settings as ComposerSettings
from services.dispatcher.settings import Settings as DispatcherSettings
from shared.kafka import make_broker


def producer_options(settings: ComposerSettings | DispatcherSettings) -> dict[str, object]:
    broker = make_broker(settings, service="any", registry=CollectorRegistry())
    options: dict[str, object] = broker._connection_kwargs
    return options


def test_the_composer_compresses_what_it_produces_and_the_others_do_not() -> None:
    assert producer_options(ComposerSettings())["compression_type"] == "zstd"
    assert producer_options(DispatcherSettings())["compression_type"] is None


def test_compression_is_a_setting() -> None:
    assert producer_options(ComposerSettings(kafka_compression=None))["compression_type"] is None
    options = producer_options(DispatcherSettings(kafka_compression="lz4"))
    assert (options["compression_type"], options["acks"], options["enable_idempotence"]) == (
        "lz4",
        "all",
        True,
    )
