"""The creator's notice: its wording, whom it goes to, and the built-in template rendered."""

from uuid import uuid4

import pytest

from services.composer.render import compile_run, email_parts
from services.targeting import notices
from services.targeting.broadcasts import Rejection, check_content, check_notices
from shared import templating
from shared.events import (
    BroadcastCompleted,
    CompletionNotices,
    Counters,
    Language,
    Outcome,
    RecipientTargeted,
    RunStarted,
    Sender,
)
from tests.unit.test_render import KEYS, NOW

NOTICES = CompletionNotices.model_validate(
    {
        "sender": "avis@neige.example",
        "sender_name": "Déneigement",
        "users": {
            "creator": {"email": "creatrice@neige.example", "language": "fr"},
            "starter": {"email": "starter@neige.example", "language": "en"},
        },
    }
)


@pytest.mark.parametrize(
    ("outcome", "fr", "en"),
    [
        ("fully_successful", "entièrement réussie", "fully successful"),
        ("partially_successful", "partiellement réussie", "partially successful"),
        ("failed", "échouée", "failed"),
        ("cancelled", "annulée", "cancelled"),
    ],
)
def test_outcomes_read_as_the_campaigns_seed_words_them(outcome: Outcome, fr: str, en: str) -> None:
    assert (notices.outcome_words(outcome, "fr"), notices.outcome_words(outcome, "en")) == (fr, en)


def test_counts_are_written_as_each_language_writes_them() -> None:
    assert notices.count(3031, "fr") == "3\u00a0031"
    assert notices.count(1234567, "en") == "1,234,567"
    assert (notices.count(0, "fr"), notices.count(999, "en")) == ("0", "999")


def completed(
    outcome: Outcome = "partially_successful", notify: list[str] | None = None
) -> BroadcastCompleted:
    return BroadcastCompleted(
        tenant_id="t",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        requested_by="starter",
        outcome=outcome,
        counters=Counters(
            contracts_targeted=3031,
            contracts_reached=3010,
            contracts_not_reached=21,
            messages_targeted=3622,
            delivered=3600,
            failed=22,
        ),
        created_by="creator",
        notify=notify or ["creator", "starter"],
    )


def test_the_values_say_the_outcome_and_the_counts() -> None:
    assert notices.values(completed(), "Avis", "fr") == {
        "broadcast": "Avis",
        "outcome": "partiellement réussie",
        "contracts": "3\u00a0031",
        "reached": "3\u00a0010",
        "not_reached": "21",
        "messages": "3\u00a0622",
        "delivered": "3\u00a0600",
        "failed": "22",
        "cancelled": "0",
    }


def test_the_notice_goes_to_the_people_named_and_configured_each_once() -> None:
    assert [u for u, _ in notices.recipients(["creator", "starter"], NOTICES)] == [
        "creator",
        "starter",
    ]
    assert [u for u, _ in notices.recipients(["starter", "starter", "ghost"], NOTICES)] == [
        "starter"
    ]
    assert notices.recipients(["creator"], None) == []


def test_the_built_in_template_passes_the_checks_a_tenants_would() -> None:
    check_content(notices.CONTENT)
    for email in notices.CONTENT.email.values():
        assert templating.check(email.subject) is None


def render(language: Language, outcome: Outcome = "fully_successful") -> tuple[str, str]:
    run = RunStarted(
        tenant_id="t",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        name="Avis <neige>",
        requested_by="starter",
        channels=["email"],
        languages=[language],
        content=notices.CONTENT,
        sender=Sender(address="avis@neige.example"),
        purpose="notice",
    )
    shown = notices.values(completed(outcome), "Avis <neige>", language)
    recipient = RecipientTargeted(
        tenant_id="t",
        broadcast_id=run.broadcast_id,
        run_id=run.run_id,
        recipient_id=uuid4(),
        channel="email",
        address="creatrice@neige.example",
        contract=notices.contract("creator", language, shown),
    )
    parts = email_parts(compile_run(run, KEYS, None), recipient, language, NOW)
    return parts.subject, parts.html


def test_the_french_notice_reads_in_french() -> None:
    subject, html = render("fr", "partially_successful")
    assert subject == "Diffusion « Avis <neige> »\u00a0: partiellement réussie"
    assert "La diffusion « Avis &lt;neige&gt; » est terminée&nbsp;: partiellement réussie." in html
    assert "<li>Contrats ciblés&nbsp;: 3\u00a0031</li>" in html
    assert "<li>Contrats non joints&nbsp;: 21</li>" in html
    assert "<li>Messages envoyés&nbsp;: 3\u00a0600</li>" in html
    assert "<li>Messages en échec&nbsp;: 22</li>" in html


def test_the_english_notice_reads_in_english() -> None:
    subject, html = render("en", "failed")
    assert subject == "Broadcast “Avis <neige>”: failed"
    assert "<li>Contracts targeted: 3,031</li>" in html
    assert "<li>Contracts reached: 3,010</li>" in html
    assert "<li>Messages failed: 22</li>" in html


def test_a_notice_address_that_is_not_one_mailbox_is_refused_naming_it() -> None:
    check_notices(NOTICES)
    check_notices(None)
    bad = NOTICES.model_copy(
        update={"users": {"u1": NOTICES.users["creator"].model_copy(update={"email": "a, b@x"})}}
    )
    with pytest.raises(Rejection) as refused:
        check_notices(bad)
    assert (refused.value.code, refused.value.field) == (
        "invalid_field",
        "settings.completion_notices.users.u1.email",
    )
