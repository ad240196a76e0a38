"""Render-only previews: a broadcast rendered for one contract and answered; nothing is sent.

Targeting checked the request and chose the contract (`run.render_requested`); the message is
rendered here as every message is, by the same templates under the same sandbox and bounds,
and answered on the request's `answers_topic` (its sender's: broadcast.events for the
platform): `broadcast.rendered`, or `rejected` with `render_failed` and the error in a few
words. Pure apart from the clock value: nothing is stored or counted.
"""

from datetime import datetime

from shared.events import (
    RENDERED_ANSWER_LIMIT,
    RENDERED_TEXT_LIMIT,
    BroadcastRejected,
    BroadcastRendered,
    RecipientTargeted,
    RejectionReason,
    RenderedEmail,
    RenderedSms,
    RenderRequested,
)
from shared.ids import recipient_id_for
from shared.isolation import in_a_few_words

from .context import LinkKeys
from .render import compile_run, email_parts, sms_text

Answer = BroadcastRendered | BroadcastRejected


def rendered(request: RenderRequested, keys: LinkKeys, now: datetime) -> Answer:
    """The message `request` asks for in its language, or why it cannot be rendered."""
    run = request.run
    recipient = RecipientTargeted(
        tenant_id=request.tenant_id,
        broadcast_id=request.broadcast_id,
        run_id=run.run_id,
        recipient_id=recipient_id_for(
            run.run_id, request.contract.contract_id, request.channel, request.address
        ),
        channel=request.channel,
        address=request.address,
        contract=request.contract,
    )
    where = f"content.{request.channel}.{request.language}"
    email, sms = None, None
    # Whatever a tenant's template raises is this preview's answer, as it is a message's
    # failure (render.render); the sender and DKIM are not rendered, so no key is needed.
    try:
        compiled = compile_run(run, keys, dkim_key=None)
        if request.channel == "email":
            parts = email_parts(compiled, recipient, request.language, now)
            email = RenderedEmail(
                subject=parts.subject,
                html=parts.html,
                text=parts.text[:RENDERED_TEXT_LIMIT],
                text_cut=len(parts.text) > RENDERED_TEXT_LIMIT,
            )
        else:
            text, size = sms_text(compiled, recipient, request.language, now)
            sms = RenderedSms(
                text=text[:RENDERED_TEXT_LIMIT],
                encoding=size.encoding,
                units=size.units,
                segments=size.segments,
                max_segments=run.settings.sms_max_segments,
            )
    except Exception as error:
        return rejected(request, "render_failed", in_a_few_words(error), where)
    answer = BroadcastRendered(
        tenant_id=request.tenant_id,
        request_id=request.request_id,
        broadcast_id=request.broadcast_id,
        contract_id=None if request.sample else request.contract.contract_id,
        channel=request.channel,
        language=request.language,
        email=email,
        sms=sms,
    )
    # Escaping can double what a template printed (or worse, for control characters): past
    # the limit the answer says so rather than fail to publish.
    written = len(answer.model_dump_json().encode())
    if written > RENDERED_ANSWER_LIMIT:
        too_large = f"the rendered message is too large to show ({written} bytes)"
        return rejected(request, "render_failed", too_large, where)
    return answer


def rejected(
    request: RenderRequested, reason: RejectionReason, message: str, field: str | None = None
) -> BroadcastRejected:
    """The render_preview's answer when it is not rendered."""
    return BroadcastRejected(
        tenant_id=request.tenant_id,
        request_id=request.request_id,
        broadcast_id=request.broadcast_id,
        command="render_preview",
        reason=reason,
        field=field,
        message=message,
    )
