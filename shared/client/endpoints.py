"""Where the local stack listens (the ports of deploy/local/stack/), each overridable from the
environment, so a script can point at another stack without code changes."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.kafka_security import KafkaSecurity, tool_security

# Variable name -> the local stack's address.
DEFAULTS = {
    "BROADCAST_KAFKA": "127.0.0.1:19092",
    "BROADCAST_DATABASE_URL": "postgresql://broadcast:broadcast@127.0.0.1:15432/broadcast",
    "BROADCAST_SMTP_CONTROL": "http://127.0.0.1:10026",
    "BROADCAST_SMS_CONTROL": "http://127.0.0.1:10080",
}


@dataclass(frozen=True)
class Endpoints:
    kafka: str  # bootstrap servers
    database_url: str  # the PostgreSQL holding every service's schema and views
    smtp_control: str  # the SMTP sink's control API
    sms_control: str  # the SMS gateway sink's control API
    # How the tools authenticate to Kafka (BROADCAST_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_*).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)


def local(environ: Mapping[str, str] | None = None) -> Endpoints:
    """The local stack's endpoints; a set, non-empty BROADCAST_* variable replaces its default.
    Read on each call: nothing is read at import time."""
    env = os.environ if environ is None else environ

    def pick(name: str) -> str:
        return env.get(name) or DEFAULTS[name]

    return Endpoints(
        kafka=pick("BROADCAST_KAFKA"),
        database_url=pick("BROADCAST_DATABASE_URL"),
        smtp_control=pick("BROADCAST_SMTP_CONTROL"),
        sms_control=pick("BROADCAST_SMS_CONTROL"),
        kafka_security=tool_security(environ),
    )
