"""Refresh requests: a message that waited long at the dispatcher is rendered again with its
contract's current values (the audience read model), or declined when the contract is gone."""

from collections.abc import Callable, Sequence

import asyncpg

from shared.events import RecipientTargeted, RefreshDeclined, RefreshRequested

from . import store
from .audience import rendered_again
from .publishers import Publishers


class Refreshes:
    def __init__(self, pool: Callable[[], asyncpg.Pool], publish: Publishers) -> None:
        self._pool = pool
        self._publish = publish

    async def answer(self, requests: Sequence[RefreshRequested]) -> None:
        """New renditions go to the composer as recipients (keyed like the first); refusals
        back to the dispatcher on broadcast.runs."""
        if not requests:
            return
        answers: list[RecipientTargeted | RefreshDeclined] = []
        async with self._pool().acquire() as connection:
            for request in requests:
                row = await store.live_contract(connection, request.tenant_id, request.contract_id)
                # A run targeting did not stream is a follow-up: its address came from a person.
                streamed = await store.run_owner(connection, request.run_id) is not None
                answers.append(rendered_again(request, row, address_given=not streamed))
        await self._publish.recipients.publish_keyed(
            ((str(a.recipient_id), a) for a in answers if isinstance(a, RecipientTargeted)),
        )
        await self._publish.runs.publish_keyed(
            ((str(a.broadcast_id), a) for a in answers if isinstance(a, RefreshDeclined)),
        )
