"""A rendered message for the dispatcher's unit tests, on either channel."""

from uuid import UUID, uuid4

from shared.events import Channel, MessageRendered


def rendered(
    channel: Channel,
    address: str,
    body: str = "Bonjour",
    *,
    run_id: UUID | None = None,
    tenant_id: str = "t-1",
) -> MessageRendered:
    return MessageRendered(
        tenant_id=tenant_id,
        broadcast_id=uuid4(),
        run_id=run_id or uuid4(),
        recipient_id=uuid4(),
        contract_id="C-1",
        channel=channel,
        address=address,
        sender="+15550000000" if channel == "sms" else "avis@example.org",
        body=body,
    )
