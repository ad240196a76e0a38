"""Targeting's command handler over in-memory publishers, for unit tests of what it answers
and where. The store and lifecycle functions a test reaches are monkeypatched by that test."""

from collections.abc import Mapping
from typing import Any, cast

import asyncpg

from services.targeting.commands import CommandHandler
from services.targeting.publishers import Publishers
from shared import topics
from shared.answering import Answers
from shared.clock import utc_now
from tests.unit.tracker_fakes import FakePublisher


def command_handler(
    events: FakePublisher, clients: Mapping[str, FakePublisher] | None = None
) -> CommandHandler:
    """The handler answering the platform on `events` (broadcast.events) and each client on
    its publisher in `clients` (answers topic -> publisher); its other collaborators are none:
    the commands these tests send never reach them."""
    publishers = Publishers(
        events=events,
        answers=Answers({topics.EVENTS.name: events, **(clients or {})}),
        runs=cast(Any, FakePublisher()),
        recipients=cast(Any, None),
        deliveries=cast(Any, None),
        tenants=cast(Any, None),
    )
    return CommandHandler(
        lambda: cast(asyncpg.Pool, object()),
        publishers,
        lambda _: None,
        one_message_runs=cast(Any, None),
        renders=cast(Any, None),
        suppressions=cast(Any, None),
        clock=utc_now,
        estimate_page_size=10,
    )
