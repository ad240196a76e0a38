"""Rendering one recipient's message from its run's templates. Pure apart from the clock value.

Templates are compiled once per run, not per message: compiling costs far more than rendering.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

from jinja2 import Template, TemplateError, UndefinedError

from shared import templating
from shared.events import (
    DeliveryFailed,
    FailureReason,
    Language,
    MessageRendered,
    RecipientTargeted,
    RunStarted,
)

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


def _text_template(text: str | None, html: str) -> Template | None:
    """The text part's template: the one given, else one derived from the HTML template once
    per run (its markup stripped, its expressions kept), so each message renders its text
    instead of parsing its HTML. None when the derivation does not compile (a tag splitting a
    template block): each message's text is then taken from its rendered HTML."""
    if text is not None:
        return _TEXT.from_string(text)
    try:
        return _TEXT.from_string(text_from_html(html))
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

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

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


def text_from_html(html: str) -> str:
    """A readable plain-text body for clients that do not show HTML."""
    extractor = _TextExtractor()
    extractor.feed(html)
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def _email(compiled: CompiledRun, recipient: RecipientTargeted, now: datetime) -> str:
    if compiled.skeleton is None:
        raise ValueError(compiled.problem)
    run = compiled.run
    language = pick_language(run.languages, recipient.contract.language, list(compiled.email))
    values = context(compiled.values, recipient, language, now)
    templates = compiled.email[language]
    html = templates.html.render(values)
    text = templates.text.render(values) if templates.text else text_from_html(html)
    return build_email(
        compiled.skeleton,
        recipient_id=recipient.recipient_id,
        to=recipient.address,
        subject=templates.subject.render(values),
        text=text,
        html=html,
        sent_at=now,
        list_unsubscribe=ListUnsubscribe(str(values["unsubscribe_url"])),
    )


def _sms(compiled: CompiledRun, recipient: RecipientTargeted, now: datetime) -> tuple[str, SmsSize]:
    run = compiled.run
    language = pick_language(run.languages, recipient.contract.language, list(compiled.sms))
    text = sms.normalise(
        compiled.sms[language].render(context(compiled.values, recipient, language, now))
    )
    size = sms.measure(text)
    if size.segments > run.settings.sms_max_segments:
        raise SmsTooLong(
            f"{size.segments} segments ({size.encoding}, {size.units} units); "
            f"the tenant allows at most {run.settings.sms_max_segments}"
        )
    return text, size


class SmsTooLong(ValueError):
    """The rendered SMS needs more segments than the tenant allows."""


def render(
    compiled: CompiledRun, recipient: RecipientTargeted, now: datetime
) -> MessageRendered | DeliveryFailed:
    """The message, or a failure naming the reason (e.g. a value this contract lacks)."""
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
    except (TemplateError, ValueError) as error:
        reason, detail = "render_failed", f"{type(error).__name__}: {error}"
    else:
        return MessageRendered(
            **recipient.ref(),
            sender=compiled.run.sender.address,
            body=body,
            sms_encoding=size.encoding if size else None,
            sms_segments=size.segments if size else None,
            preview=compiled.run.purpose == "preview",
        )
    return DeliveryFailed(**recipient.ref(), reason=reason, detail=detail)
