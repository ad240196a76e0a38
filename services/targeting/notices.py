"""The creator's notice: a completed run told by email, in each person's language. Pure.

The Campaigns seed notifies a campaign's creator with the outcome and the counts. When a tenant
configured `completion_notices`, each person a `broadcast.completed` names (`notify`) who is
listed there gets an email, sent through the whole pipeline as a one-message run of purpose
`notice` (one_message_runs.py): rendered by the composer like any message, counted in no
broadcast's counters, opening no action.

The notice is written in the built-in template below; its values (the broadcast's name, the
outcome in words, the counts) travel as the custom fields of a synthetic contract, so the
composer renders it, escaped and bounded, with nothing of its own to learn.
"""

from shared.events import (
    BroadcastCompleted,
    CompletionNotices,
    Content,
    ContractSnapshot,
    EmailContent,
    Language,
    NoticeUser,
    Outcome,
    Sender,
)
from shared.labels import labels


def outcome_words(outcome: Outcome, language: Language) -> str:
    """The Campaigns seed's words for the outcome (`shared.labels`), in `language`."""
    french, english = labels("outcome", outcome)
    return french if language == "fr" else english


def count(number: int, language: Language) -> str:
    """A count as the language writes it: `3 031` (no-break space, as amounts) or `3,031`."""
    grouped = f"{number:,}"
    return grouped.replace(",", "\u00a0") if language == "fr" else grouped


def _field(name: str) -> str:
    return f"{{{{ contract.attributes.{name} }}}}"


_COUNTS = (
    "contracts",
    "reached",
    "not_reached",
    "messages",
    "delivered",
    "failed",
    "cancelled",
)


def _counts(labels: tuple[str, ...], colon: str) -> str:
    """The counts as a list, each after its label in the language."""
    return "".join(
        f"<li>{label}{colon} {_field(name)}</li>"
        for label, name in zip(labels, _COUNTS, strict=True)
    )


_FR_LIST = _counts(
    (
        "Contrats ciblés",
        "Contrats joints",
        "Contrats non joints",
        "Messages ciblés",
        "Messages envoyés",
        "Messages en échec",
        "Messages annulés",
    ),
    "&nbsp;:",
)
_EN_LIST = _counts(
    (
        "Contracts targeted",
        "Contracts reached",
        "Contracts not reached",
        "Messages targeted",
        "Messages sent",
        "Messages failed",
        "Messages cancelled",
    ),
    ":",
)

# The built-in notice, French and English.
CONTENT = Content(
    email={
        "fr": EmailContent(
            subject=f"Diffusion « {_field('broadcast')} »\u00a0: {_field('outcome')}",
            html=f"<p>Bonjour,</p><p>La diffusion « {_field('broadcast')} » est terminée"
            f"&nbsp;: {_field('outcome')}.</p><ul>{_FR_LIST}</ul>",
        ),
        "en": EmailContent(
            subject=f"Broadcast “{_field('broadcast')}”: {_field('outcome')}",
            html=f"<p>Hello,</p><p>The broadcast “{_field('broadcast')}” is finished: "
            f"{_field('outcome')}.</p><ul>{_EN_LIST}</ul>",
        ),
    }
)


def values(completed: BroadcastCompleted, name: str, language: Language) -> dict[str, str]:
    """What the notice of `completed` (its broadcast named `name`) says, in `language`."""
    counters = completed.counters
    return {
        "broadcast": name,
        "outcome": outcome_words(completed.outcome, language),
        "contracts": count(counters.contracts_targeted, language),
        "reached": count(counters.contracts_reached, language),
        "not_reached": count(counters.contracts_not_reached, language),
        "messages": count(counters.messages_targeted or 0, language),
        "delivered": count(counters.delivered, language),
        "failed": count(counters.failed, language),
        "cancelled": count(counters.cancelled, language),
    }


def recipients(
    notify: list[str], notices: CompletionNotices | None
) -> list[tuple[str, NoticeUser]]:
    """The people of `notify` the tenant configured an email for, each once, in order."""
    if notices is None:
        return []
    return [(user, notices.users[user]) for user in dict.fromkeys(notify) if user in notices.users]


def sender(notices: CompletionNotices) -> Sender:
    return Sender(address=notices.sender, name=notices.sender_name)


def contract(user_id: str, language: Language, shown: dict[str, str]) -> ContractSnapshot:
    """The synthetic contract a notice is rendered with: the person, and the notice's values
    as its custom fields."""
    return ContractSnapshot(
        contract_id=f"notice:{user_id}",
        number="",
        status="",
        building_type="",
        zone="",
        season="",
        client_name=user_id,
        service_address="",
        language=language,
        balance=0,
        amount_paid=0,
        attributes=shown,
    )
