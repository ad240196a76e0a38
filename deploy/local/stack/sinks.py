"""The SMTP and SMS sinks (deploy/local/smtp_sink.py, sms_sink.py) as stack components."""

from __future__ import annotations

from .component import Component, python_module
from .config import SMS_PORT, SMTP_HTTP_PORT, SMTP_PORT
from .readiness import all_of, http_ok, tcp_answers


def smtp_sink() -> Component:
    return python_module(
        "smtp-sink",
        "deploy.local.smtp_sink",
        "--smtp-port",
        str(SMTP_PORT),
        "--http-port",
        str(SMTP_HTTP_PORT),
        ports=(SMTP_PORT, SMTP_HTTP_PORT),
        ready=all_of(lambda: tcp_answers(SMTP_PORT), http_ok(SMTP_HTTP_PORT, "/_sink/health")),
        start_timeout=20.0,
    )


def sms_sink() -> Component:
    return python_module(
        "sms-sink",
        "deploy.local.sms_sink",
        "--port",
        str(SMS_PORT),
        ports=(SMS_PORT,),
        ready=http_ok(SMS_PORT, "/_sink/health"),
        start_timeout=20.0,
    )
