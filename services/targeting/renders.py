"""Render-only previews (`render_preview`): targeting checks the request and gathers what the
message is rendered with; the composer renders it and answers (`broadcast.rendered`).

Targeting owns the broadcasts and the contracts, the composer the rendering: the request goes
to the composer as `run.render_requested` on broadcast.runs, keyed by broadcast like the
broadcast's runs, with the answers topic of the request's sender, where the composer answers.
Nothing is stored, sent or counted; only a refusal is answered here.
"""

from collections.abc import Callable, Sequence

import asyncpg

from shared.events import Channel, Language, RenderPreview, RenderRequested
from shared.variables import sample_contract

from .audience import Row, reachable, snapshot
from .broadcasts import Rejection
from .one_message_runs import named_contract, previewable
from .publishers import Publishers

# Where the sample contract's message would go: reserved for documentation (RFC 2606, and
# the 555-01xx numbers of the North American plan), so a link signed for it reaches nobody.
SAMPLE_ADDRESSES: dict[Channel, str] = {
    "email": "camille.tremblay@example.com",
    "sms": "+15145550100",
}


def language_of(
    asked: Language | None, preferred: Language | None, enabled: Sequence[Language]
) -> Language:
    """The language asked, else the contract's own when the broadcast is written in it (as a
    message picks it), else the broadcast's first; Rejection for one it is not written in."""
    if asked is None:
        return preferred if preferred is not None and preferred in enabled else enabled[0]
    if asked not in enabled:
        raise Rejection("invalid_field", "language", f"the broadcast is not written in '{asked}'")
    return asked


def address_of(row: Row | None, channel: Channel) -> str:
    """The contract's first usable address on `channel`, as its message would go to; the
    sample address for the sample contract or a contract without one."""
    found = reachable(row, [channel]) if row is not None else []
    return found[0][1] if found else SAMPLE_ADDRESSES[channel]


class RenderRequests:
    def __init__(self, pool: Callable[[], asyncpg.Pool], publish: Publishers) -> None:
        self._pool = pool
        self._publish = publish

    async def request(self, command: RenderPreview, answers_topic: str) -> None:
        """Hand the render over to the composer, which answers on `answers_topic`; Rejection
        (answered by the caller) for an unknown broadcast or contract, a channel or language it
        does not use."""
        async with self._pool().acquire() as connection:
            found = await previewable(
                connection, command.tenant_id, command.broadcast_id, command.channel
            )
            row = None
            if command.contract_id is not None:
                row = await named_contract(connection, command.tenant_id, command.contract_id)
        languages = found.definition.languages
        language = language_of(command.language, row["language"] if row else None, languages)
        await self._publish.runs.publish(
            RenderRequested(
                tenant_id=command.tenant_id,
                broadcast_id=command.broadcast_id,
                request_id=command.request_id,
                requested_by=command.requested_by,
                run=found.run(command.broadcast_id, command.request_id, command.requested_by),
                channel=command.channel,
                language=language,
                address=address_of(row, command.channel),
                contract=snapshot(row) if row else sample_contract(language),
                sample=row is None,
                answers_topic=answers_topic,
            ),
            key=str(command.broadcast_id).encode(),
        )
