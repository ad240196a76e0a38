"""The rules a broadcast definition must meet before it is accepted. Pure: no I/O."""

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from shared import templating
from shared.addresses import is_mailbox, unusable_on
from shared.events import (
    BroadcastDefinition,
    Channel,
    CompletionNotices,
    Content,
    CreateBroadcast,
    Criterion,
    RejectionReason,
)

from .criteria import CompiledCriteria, InvalidCriteria, compile_criteria


@dataclass(frozen=True)
class Rejection(Exception):
    """A command refused, with a machine-readable code and the dotted path of the field."""

    code: RejectionReason
    field: str | None
    message: str


def no_broadcast(tenant_id: str, broadcast_id: UUID) -> Rejection:
    return Rejection(
        "broadcast_not_found",
        "broadcast_id",
        f"no broadcast {broadcast_id} for tenant '{tenant_id}'",
    )


def id_taken(command: CreateBroadcast) -> Rejection:
    """The refusal of a create whose id another create holds. The same words whoever holds
    it, this tenant or another, and whatever request created it: the refused tenant learns
    that the id is taken and nothing else."""
    return Rejection(
        "broadcast_exists", "broadcast_id", f"broadcast {command.broadcast_id} already exists"
    )


def no_template(template_id: str) -> Rejection:
    return Rejection("template_not_found", "template_id", f"no template '{template_id}'")


def _template_fields(content: Content) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for language, email in content.email.items():
        fields.append((f"email.{language}.subject", email.subject))
        fields.append((f"email.{language}.html", email.html))
        if email.text is not None:
            fields.append((f"email.{language}.text", email.text))
    for language, sms in content.sms.items():
        fields.append((f"sms.{language}.text", sms.text))
    return fields


def check_content(content: Content, *, field: str = "content") -> None:
    """Every template parses, uses only catalogued variables and renders within its bounds
    (subjects are one line: events.OneLine)."""
    for name, source in _template_fields(content):
        problem = templating.check(source)
        if problem is not None:
            where = f" at line {problem.line}" if problem.line else ""
            raise Rejection("invalid_template", f"{field}.{name}", f"{problem.message}{where}")


def check_criteria(criteria: Sequence[Criterion]) -> CompiledCriteria:
    """The compiled criteria, or a Rejection naming the offending criterion."""
    try:
        return compile_criteria(criteria)
    except InvalidCriteria as error:
        raise Rejection(error.code, error.field, error.message) from None


def check_definition(command: BroadcastDefinition, template: Content | None = None) -> None:
    """Raise Rejection for the first problem found, naming its field.

    `template` is the content of the saved template the command names, if it names one."""
    check_criteria(command.criteria)
    if (command.content is None) == (command.template_id is None):
        raise Rejection(
            "missing_content" if command.content is None else "invalid_field",
            "content",
            "give either the content or a template_id, not both",
        )
    content, field = (command.content, "content") if command.content else (template, "template_id")
    assert content is not None, "the caller resolves the template first"
    for channel in command.channels:
        given = content.email if channel == "email" else content.sms
        for language in command.languages:
            if language not in given:
                where = f"content.{channel}.{language}" if field == "content" else field
                raise Rejection(
                    "missing_content",
                    where,
                    f"{channel} is enabled in '{language}' but has no {channel} content "
                    f"in that language",
                )
    if command.content is not None:
        check_content(command.content)
    # Line breaks in sender fields are refused when the command is read (events.OneLine).
    _check_mailboxes(
        [("sender.address", command.sender.address), ("sender.reply_to", command.sender.reply_to)]
    )


def check_notices(notices: CompletionNotices | None) -> None:
    """Every address a completion notice is sent from or to is one mailbox."""
    if notices is None:
        return
    where = "settings.completion_notices"
    _check_mailboxes(
        [(f"{where}.sender", notices.sender)]
        + [(f"{where}.users.{user}.email", u.email) for user, u in notices.users.items()]
    )


def _check_mailboxes(fields: Sequence[tuple[str, str | None]]) -> None:
    for name, value in fields:
        if value is not None and not is_mailbox(value):
            raise Rejection("invalid_field", name, f"'{value}' is not one email address")


def check_preview_address(channel: Channel, to: str) -> None:
    """The one address a preview goes to must be usable on its channel."""
    why = unusable_on(channel, to)
    if why is not None:
        raise Rejection("invalid_field", "to", why)
