"""The bounce receiver: the SMTP server of the bounce domain, where the reports about our
emails are mailed (their return paths, shared/return_path.py).

RCPT takes only the return paths this deployment signed (and the feedback-loop address,
`fbl@<domain>`, for complaints naming their message by its Message-ID): anything else is
refused with 550 5.1.1, so the server is no open mailbox and a forged return path is refused
before its data is read. DATA is read (mailed_reports.py), its findings handed to the intake,
and 250 answered only once the reports are on Kafka: a 451 otherwise, so that the sender (an
MTA, which keeps a refused report queued and tries again) loses nothing. A mail that reports
nothing (an auto-reply, garbage) is taken and counted. Over 1 MiB it is refused (552): a DSN
carries the returned message's headers, not the whole message.
"""

import asyncio
import logging
from collections.abc import Sequence

from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from shared import return_path
from shared.clock import Clock

from . import mailed_reports
from .intake import Intake
from .settings import Settings

log = logging.getLogger("dispatcher")

MAX_MAIL_BYTES = 1024 * 1024
FEEDBACK_LOCAL_PART = "fbl"


class BounceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.mail = Counter(
            "broadcast_bounce_mail",
            "Mail taken by the bounce receiver, by what it reported.",
            ["kind"],
            registry=registry,
        )
        self.refused = Counter(
            "broadcast_bounce_rcpt_refused",
            "Recipients the bounce receiver refused: not a return path it signed.",
            registry=registry,
        )
        self.reports = Counter(
            "broadcast_bounce_reports",
            "Reports published from received mail (a report about a message the ledger does "
            "not know is not published).",
            ["type"],
            registry=registry,
        )


class BounceHandler:
    """aiosmtpd's handler: one instance serves every connection."""

    def __init__(
        self,
        domain: str,
        keys: Sequence[bytes],
        intake: Intake,
        metrics: BounceMetrics,
        clock: Clock,
    ) -> None:
        self._domain = domain.lower()
        self._keys = list(keys)
        self._intake = intake
        self._metrics = metrics
        self._clock = clock

    def _accepts(self, address: str) -> bool:
        if return_path.recipient_of(address, self._domain, self._keys) is not None:
            return True
        return address.strip().lower() == f"{FEEDBACK_LOCAL_PART}@{self._domain}"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self._accepts(address):
            self._metrics.refused.inc()
            return "550 5.1.1 no such return path"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        mail = mailed_reports.read(data, self._clock())
        named = [
            recipient_id
            for address in envelope.rcpt_tos
            if (recipient_id := return_path.recipient_of(address, self._domain, self._keys))
        ]
        try:
            reports = await self._intake.take(mailed_reports.findings(mail, named, data))
        except ValidationError:
            # A report our reader built but the event refuses would be refused again on every
            # retry: taken and counted, the sender moves on.
            log.exception("bounce receiver: a report did not validate; mail taken, not reported")
            self._metrics.mail.labels("unreadable").inc()
            return "250 2.0.0 OK"
        except Exception:
            # The database or the broker failed us: the sender keeps the mail and tries later.
            log.exception("bounce receiver: reports not published; answered 451")
            return "451 4.3.0 try again later"
        self._metrics.mail.labels(mail.kind).inc()
        for report in reports:
            self._metrics.reports.labels(report.type).inc()
        return "250 2.0.0 OK"


class BounceReceiver:
    """Serves SMTP on `host`:`port`; `start` and `stop` fit service_app's hooks."""

    def __init__(self, handler: BounceHandler, host: str, port: int, hostname: str) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._hostname = hostname
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        return SMTP(
            self._handler,
            # Named: without it, aiosmtpd resolves the machine's name for every connection.
            hostname=self._hostname,
            data_size_limit=MAX_MAIL_BYTES,
            decode_data=False,
            # A report may quote an internationalised address.
            enable_SMTPUTF8=True,
            timeout=60,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port)

    async def stop(self) -> None:
        # New connections are refused; a mail in the middle of its DATA gets a 451 or no
        # answer at all, and its sender tries again.
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def ports(self) -> list[int]:
        """The ports it listens on (the one asked for, or the one the system chose for 0)."""
        sockets = self._server.sockets if self._server is not None else ()
        return [s.getsockname()[1] for s in sockets]


def from_settings(
    settings: Settings, intake: Intake, registry: CollectorRegistry, clock: Clock
) -> BounceReceiver | None:
    """The bounce receiver the settings ask for, or None when it is off."""
    if settings.bounce_smtp_port is None or settings.return_path_domain is None:
        return None
    domain = settings.return_path_domain
    handler = BounceHandler(
        domain, settings.return_path_keys(), intake, BounceMetrics(registry), clock
    )
    return BounceReceiver(handler, settings.bounce_smtp_host, settings.bounce_smtp_port, domain)
