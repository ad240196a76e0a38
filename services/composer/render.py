"""Rendering one recipient's message from its run's templates. Pure apart from the clock value.

Templates are compiled once per run, not per message: compiling costs far more than rendering.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import entities
from html.parser import HTMLParser
from uuid import UUID
from zoneinfo import ZoneInfo

from jinja2 import Template, TemplateError, UndefinedError

from shared import templating
from shared.events import (
    DeliveryFailed,
    FailureReason,
    Language,
    MessageRendered,
    RecipientTargeted,
    RefreshDeclined,
    RunStarted,
)
from shared.ids import event_id_for
from shared.isolation import in_a_few_words

from . import sms
from .context import LinkKeys, RunValues, context
from .mime import DkimKey, EmailSkeleton, InvalidAddress, ListUnsubscribe, build_email, skeleton
from .sms import SmsSize


@dataclass(frozen=True)
class EmailTemplates:
    subject: Template
    html: Template
    text: Template | None


@dataclass(frozen=True)
class CompiledRun:
    """A run ready to render. `problem` fails every email of the run, e.g. a missing DKIM key."""

    values: RunValues
    email: dict[Language, EmailTemplates]
    sms: dict[Language, Template]
    skeleton: EmailSkeleton | None
    problem: str | None = None

    @property
    def run(self) -> RunStarted:
        return self.values.run


# An email's envelope sender (the dispatcher's MAIL FROM): its own return path, by recipient id.
ReturnPath = Callable[[UUID], str]


_HTML = templating.environment(html=True)
_TEXT = templating.environment(html=False)


def compile_run(run: RunStarted, keys: LinkKeys, dkim_key: bytes | None) -> CompiledRun:
    """`dkim_key` is the tenant's private key when its settings ask for DKIM signing."""
    values = RunValues(run, ZoneInfo(run.settings.time_zone), keys)
    email = {
        language: EmailTemplates(
            subject=_TEXT.from_string(content.subject),
            html=_HTML.from_string(content.html),
            text=_text_template(content.text, content.html),
        )
        for language, content in run.content.email.items()
    }
    sms = {language: _TEXT.from_string(c.text) for language, c in run.content.sms.items()}
    dkim = run.settings.dkim
    if dkim is not None and dkim_key is None:
        problem = f"no DKIM key for selector '{dkim.selector}' of tenant '{run.tenant_id}'"
        return CompiledRun(values, email, sms, None, problem)
    try:
        frame = skeleton(
            sender_address=run.sender.address,
            sender_name=run.sender.name,
            reply_to=run.sender.reply_to,
            dkim=DkimKey(dkim.domain, dkim.selector, dkim_key) if dkim and dkim_key else None,
        )
    except ValueError as error:  # a line break or a bad address in the sender, a bad key
        return CompiledRun(values, email, sms, None, f"sender: {error}")
    return CompiledRun(values, email, sms, frame)


def _envelope_sender(
    compiled: CompiledRun, recipient: RecipientTargeted, return_path: ReturnPath | None
) -> str:
    # An SMS's sender is the dispatcher's number: this one only says who the run is from.
    if recipient.channel == "email" and return_path is not None:
        return return_path(recipient.recipient_id)
    return compiled.run.sender.address


def _text_template(text: str | None, html: str) -> Template | None:
    """The text part's template: the one given, else one derived from the HTML template once
    per run (its markup stripped, its expressions kept), so each message renders its text
    instead of parsing its HTML. None when the derivation does not compile (a tag splitting a
    template block): each message's text is then taken from its rendered HTML."""
    if text is not None:
        return _TEXT.from_string(text)
    try:
        return _TEXT.from_string(text_from_html(html, template=True))
    except TemplateError:
        return None


def pick_language(
    enabled: Sequence[Language], preferred: Language, available: Sequence[Language]
) -> Language:
    """One language enabled: everyone gets it. Both: the contract's own, else the other one."""
    usable = [language for language in enabled if language in available]
    if preferred in usable:
        return preferred
    return usable[0]


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "table"})
    # Characters that would make template code in the text part's template, were they written
    # as themselves: from a character reference, they stay text (`&#123;&#123; 7*7 &#125;&#125;`
    # is shown, not computed).
    _TEMPLATE_SYNTAX = frozenset("{}%#")

    def __init__(self, template: bool = False) -> None:
        """`template`: the HTML is a template's source, and so is the text made of it."""
        super().__init__(convert_charrefs=not template)
        self.parts: list[str] = []
        self._skip = 0
        self._template = template

    def _reference(self, char: str) -> None:
        if self._skip:
            return
        self.parts.append(f"{{{{ {char!r} }}}}" if char in self._TEMPLATE_SYNTAX else char)

    def handle_charref(self, name: str) -> None:
        try:
            code = int(name[1:], 16) if name[:1] in "xX" else int(name)
            char = chr(code)
        except (ValueError, OverflowError):
            char = "\ufffd"
        self._reference(char)

    def handle_entityref(self, name: str) -> None:
        self._reference(entities.html5.get(name + ";", f"&{name}"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("p", "div", "table"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def text_from_html(html: str, *, template: bool = False) -> str:
    """A readable plain-text body for clients that do not show HTML; with `template`, the
    text part's template made from an HTML template's source."""
    extractor = _TextExtractor(template)
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


# The largest HTML part a message may have: beyond it a template is producing something else
# than a message (and mailbox providers clip far below).
MAX_HTML = 256 * 1024


@dataclass(frozen=True)
class EmailParts:
    """One email's rendered parts, before they are assembled into a message."""

    subject: str
    html: str
    text: str
    unsubscribe_url: str


def email_parts(
    compiled: CompiledRun, recipient: RecipientTargeted, language: Language, now: datetime
) -> EmailParts:
    """The email's parts in `language`, under the template bounds; raises what the templates
    raise (a missing value, a bound exceeded, anything a template does)."""
    values = context(compiled.values, recipient, language, now)
    templates = compiled.email[language]
    with templating.budget():
        html = templates.html.render(values)
        if len(html) > MAX_HTML:
            raise templating.TemplateTooCostly(f"an HTML part above {MAX_HTML // 1024} KB")
        text = templates.text.render(values) if templates.text else text_from_html(html)
        subject = templates.subject.render(values)
    return EmailParts(subject, html, text, str(values["unsubscribe_url"]))


def _email(compiled: CompiledRun, recipient: RecipientTargeted, now: datetime) -> str:
    if compiled.skeleton is None:
        raise ValueError(compiled.problem)
    run = compiled.run
    language = pick_language(run.languages, recipient.contract.language, list(compiled.email))
    parts = email_parts(compiled, recipient, language, now)
    return build_email(
        compiled.skeleton,
        recipient_id=recipient.recipient_id,
        to=recipient.address,
        subject=parts.subject,
        text=parts.text,
        html=parts.html,
        sent_at=now,
        list_unsubscribe=ListUnsubscribe(parts.unsubscribe_url),
    )


def sms_text(
    compiled: CompiledRun, recipient: RecipientTargeted, language: Language, now: datetime
) -> tuple[str, SmsSize]:
    """The SMS in `language` as it is sent, and its size; raises what the template raises."""
    with templating.budget():
        rendered = compiled.sms[language].render(context(compiled.values, recipient, language, now))
    text = sms.normalise(rendered)
    return text, sms.measure(text)


def _sms(compiled: CompiledRun, recipient: RecipientTargeted, now: datetime) -> tuple[str, SmsSize]:
    run = compiled.run
    language = pick_language(run.languages, recipient.contract.language, list(compiled.sms))
    text, size = sms_text(compiled, recipient, language, now)
    if size.segments > run.settings.sms_max_segments:
        raise SmsTooLong(
            f"{size.segments} segments ({size.encoding}, {size.units} units); "
            f"the tenant allows at most {run.settings.sms_max_segments}"
        )
    return text, size


class SmsTooLong(ValueError):
    """The rendered SMS needs more segments than the tenant allows."""


Unrendered = DeliveryFailed | RefreshDeclined


def unrendered(recipient: RecipientTargeted, reason: FailureReason, detail: str) -> Unrendered:
    """A message the composer cannot render. Its first rendition fails here, for the tracker
    to count. A later one (a waiting message rendered again with its contract's current
    values) is held by the dispatcher, which alone may settle it: the refresh is declined
    with the reason, and the dispatcher fails the message and announces it, once."""
    if recipient.rendition:
        return RefreshDeclined(
            **recipient.ref(),
            event_id=event_id_for(recipient.recipient_id, f"unrendered-{recipient.rendition}"),
            rendition=recipient.rendition,
            reason=reason,
            detail=detail,
        )
    return DeliveryFailed(**recipient.ref(), reason=reason, detail=detail)


def render(
    compiled: CompiledRun,
    recipient: RecipientTargeted,
    now: datetime,
    return_path: ReturnPath | None = None,
) -> MessageRendered | Unrendered:
    """The message, or a failure naming the reason (e.g. a value this contract lacks). An email
    is sent from `return_path` when given, else from the sender's address; either way its From
    header is the sender's."""
    reason: FailureReason
    try:
        if recipient.channel == "email":
            body, size = _email(compiled, recipient, now), None
        else:
            body, size = _sms(compiled, recipient, now)
    except UndefinedError as error:
        reason, detail = "missing_value", str(error)
    except SmsTooLong as error:
        reason, detail = "sms_too_long", str(error)
    except InvalidAddress as error:
        reason, detail = "invalid_address", str(error)
    # Whatever else a tenant's template raises ({{ 1/0 }}, {{ 1 + 'a' }}, a recursive macro)
    # is this message's failure, not the consumer's.
    except Exception as error:
        reason, detail = "render_failed", in_a_few_words(error)
    else:
        return MessageRendered(
            **recipient.ref(),
            sender=_envelope_sender(compiled, recipient, return_path),
            body=body,
            sms_encoding=size.encoding if size else None,
            sms_segments=size.segments if size else None,
            # A preview or a notice goes to a person of the tenant, at once.
            preview=compiled.run.purpose in ("preview", "notice"),
            rendition=recipient.rendition,
        )
    return unrendered(recipient, reason, detail)
