"""Addresses, phone numbers and link tokens kept out of the logs.

Log lines go to places with wider access and longer lives than the data they describe (a log
shipper, an incident ticket), and a link token carries its recipient's address. So every line a
service logs is redacted on its way out (`install`): its own lines, FastStream's (the broker logs
through the service's logger), the shared modules', and uvicorn's, whose access lines carry the
unsubscribe page's query string. Dead letters keep the record as it was, on the dead-letter
topic, where the broker's ACLs guard it; only their log line is redacted.
"""

import logging
import re

EMAIL_MASK = "<email>"
PHONE_MASK = "<phone>"
TOKEN_MASK = "token=<token>"  # noqa: S105 - what replaces a token, not one

# Loose on purpose: anything shaped like user@domain.tld, even where it is not a valid address
# (a bounce message quoting it inside <> or after "to=").
_EMAIL = re.compile(r"[^\s@<>\"'(),;:\[\]=]+@[\w-]+(?:\.[\w-]+)+")
# E.164, as the engine stores phone numbers (shared/addresses.py); bare digit runs are left
# alone, since dates, ids and offsets are digits too.
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}\b")
# A link's query parameter, whatever encoding follows (the payload is base64 of the address).
_TOKEN = re.compile(r"token=[^&\s\"'<>]*")
# The shared modules that log on their own logger; a service's modules log on its name.
SHARED_LOGGERS = ("shared.kafka", "shared.isolation")
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "mail.log")  # mail.log: aiosmtpd's


def redact(text: str) -> str:
    """`text` with every email address, E.164 phone number and `token=` value masked."""
    return _PHONE.sub(PHONE_MASK, _EMAIL.sub(EMAIL_MASK, _TOKEN.sub(TOKEN_MASK, text)))


class RedactingFilter(logging.Filter):
    """Redacts a record in place: its message, its arguments and its traceback's messages.

    Arguments stay a tuple of the same length (uvicorn's access formatter unpacks them); an
    argument whose text had something to mask is replaced by the redacted text, any other is
    left as it is (a `%d` or `%.1f` still gets its number)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        if record.exc_info and not record.exc_text:
            # Handlers format the traceback from exc_text when it is set.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _redacted(arg: object) -> object:
    if isinstance(arg, int | float):
        return arg
    text = str(arg)
    masked = redact(text)
    return arg if masked == text else masked


def install(service: str) -> None:
    """Redact every line `service` logs from now on (see the module's docstring). Idempotent."""
    for name in (service, *SHARED_LOGGERS, *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
