"""What a broadcast sends and from whom: the templates per channel and language, and the
sender. Carried by the commands that define a broadcast and by the run that freezes it."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events.base import Address, Body, Language, OneLine, Text


class EmailContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: Annotated[str, StringConstraints(min_length=1, max_length=998), OneLine]
    html: Text
    text: Text | None = None


class SmsContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Annotated[str, StringConstraints(min_length=1, max_length=2_000), Body]


class Content(BaseModel):
    """The message per channel and language, as jinja2 templates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: dict[Language, EmailContent] = Field(default_factory=dict)
    sms: dict[Language, SmsContent] = Field(default_factory=dict)


class Sender(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Address
    name: Annotated[str, StringConstraints(max_length=200), OneLine] = ""
    reply_to: Annotated[str, StringConstraints(max_length=254), OneLine] | None = None
