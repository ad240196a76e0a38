"""Rendering one recipient's message from its run's templates. Pure apart from the clock value.

Templates are compiled once per run, not per message: compiling costs far more than rendering.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from jinja2 import Template, TemplateError

from shared import templating
from shared.events import (
    DeliveryFailed,
    Language,
    MessageRendered,
    RecipientTargeted,
    RunStarted,
)

from .mime import HeaderInjection, build_email


@dataclass(frozen=True)
class EmailTemplates:
    subject: Template
    html: Template
    text: Template | None


@dataclass(frozen=True)
class CompiledRun:
    run: RunStarted
    email: dict[Language, EmailTemplates]
    sms: dict[Language, Template]


_HTML = templating.environment(html=True)
_TEXT = templating.environment(html=False)


def compile_run(run: RunStarted) -> CompiledRun:
    email = {
        language: EmailTemplates(
            subject=_TEXT.from_string(content.subject),
            html=_HTML.from_string(content.html),
            text=_TEXT.from_string(content.text) if content.text is not None else None,
        )
        for language, content in run.content.email.items()
    }
    sms = {language: _TEXT.from_string(c.text) for language, c in run.content.sms.items()}
    return CompiledRun(run, email, sms)


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


def context(recipient: RecipientTargeted) -> dict[str, Any]:
    return {"contract": recipient.contract.model_dump()}


def render(
    compiled: CompiledRun, recipient: RecipientTargeted, now: datetime
) -> MessageRendered | DeliveryFailed:
    """The message, or a render failure naming the reason (e.g. a value this contract lacks)."""
    run = compiled.run
    values = context(recipient)
    try:
        if recipient.channel == "email":
            language = pick_language(
                run.languages, recipient.contract.language, list(compiled.email)
            )
            templates = compiled.email[language]
            html = templates.html.render(values)
            text = templates.text.render(values) if templates.text else text_from_html(html)
            body = build_email(
                recipient_id=recipient.recipient_id,
                sender_address=run.sender.address,
                sender_name=run.sender.name,
                reply_to=run.sender.reply_to,
                to=recipient.address,
                subject=templates.subject.render(values),
                text=text,
                html=html,
                sent_at=now,
            )
        else:
            language = pick_language(run.languages, recipient.contract.language, list(compiled.sms))
            body = compiled.sms[language].render(values)
    except (TemplateError, HeaderInjection, ValueError) as error:
        return DeliveryFailed(
            **recipient.ref(),
            reason="render_failed",
            detail=f"{type(error).__name__}: {error}",
        )
    return MessageRendered(
        **recipient.ref(),
        sender=run.sender.address,
        body=body,
    )
