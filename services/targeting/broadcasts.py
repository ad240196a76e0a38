"""The rules a broadcast definition must meet before it is accepted. Pure: no I/O."""

from collections.abc import Sequence
from dataclasses import dataclass

from shared import templating
from shared.events import CreateBroadcast, Criterion, RejectionReason

from .criteria import CompiledCriteria, InvalidCriteria, compile_criteria


@dataclass(frozen=True)
class Rejection(Exception):
    """A command refused, with a machine-readable code and the dotted path of the field."""

    code: RejectionReason
    field: str | None
    message: str


def _template_fields(command: CreateBroadcast) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for language, email in command.content.email.items():
        fields.append((f"content.email.{language}.subject", email.subject))
        fields.append((f"content.email.{language}.html", email.html))
        if email.text is not None:
            fields.append((f"content.email.{language}.text", email.text))
    for language, sms in command.content.sms.items():
        fields.append((f"content.sms.{language}.text", sms.text))
    return fields


def check_criteria(criteria: Sequence[Criterion], *, first: int) -> CompiledCriteria:
    """The compiled criteria, or a Rejection naming the offending criterion."""
    try:
        return compile_criteria(criteria, first=first)
    except InvalidCriteria as error:
        raise Rejection(error.code, error.field, error.message) from None


def check_definition(command: CreateBroadcast) -> None:
    """Raise Rejection for the first problem found, naming its field."""
    check_criteria(command.criteria, first=1)
    for channel in command.channels:
        given = command.content.email if channel == "email" else command.content.sms
        for language in command.languages:
            if language not in given:
                raise Rejection(
                    "missing_content",
                    f"content.{channel}.{language}",
                    f"{channel} is enabled in '{language}' but has no {channel} content "
                    f"in that language",
                )
    for field, source in _template_fields(command):
        problem = templating.check(source)
        if problem is not None:
            where = f" at line {problem.line}" if problem.line else ""
            raise Rejection("invalid_template", field, f"{problem.message}{where}")
    for field, value in (
        ("sender.address", command.sender.address),
        ("sender.name", command.sender.name),
    ):
        if "\r" in value or "\n" in value:
            raise Rejection("invalid_field", field, "line breaks are not allowed in a header")
    if "@" not in command.sender.address:
        raise Rejection("invalid_field", "sender.address", "not an email address")
