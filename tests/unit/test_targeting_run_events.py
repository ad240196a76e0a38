"""The one builder of `run.started` and `run.targeting_completed`, for every kind of run."""

from uuid import uuid4

from services.targeting.run_events import run_started, targeting_completed
from shared.events import Content, CreateBroadcast, TemplateVersion, TenantSettings
from shared.ids import event_id_for

DEFINITION = CreateBroadcast.model_validate(
    {
        "tenant_id": "acme",
        "request_id": "r1",
        "requested_by": "creator",
        "name": "Avis",
        "channels": ["email", "sms"],
        "languages": ["fr", "en"],
        "template_id": "avis",
        "sender": {"address": "noreply@acme.example", "name": "Acme"},
    }
)
PINNED = Content.model_validate({"sms": {"fr": {"text": "Bonjour"}, "en": {"text": "Hello"}}})
TEMPLATE = TemplateVersion(template_id="avis", version=3)
SETTINGS = TenantSettings(grace_seconds=30)


def test_a_broadcast_run_sends_what_its_definition_says_with_the_content_pinned_for_it() -> None:
    broadcast_id, run_id, previous = uuid4(), uuid4(), uuid4()
    run = run_started(
        broadcast_id,
        run_id,
        DEFINITION,
        requested_by="operator",
        content=PINNED,
        template=TEMPLATE,
        settings=SETTINGS,
        resends_failures_of=previous,
        include_unknown=True,
    )
    assert (run.tenant_id, run.broadcast_id, run.run_id) == ("acme", broadcast_id, run_id)
    assert (run.name, run.requested_by, run.purpose) == ("Avis", "operator", "broadcast")
    assert (run.channels, run.languages) == (["email", "sms"], ["fr", "en"])
    assert (run.content, run.template, run.settings) == (PINNED, TEMPLATE, SETTINGS)
    assert run.sender == DEFINITION.sender
    assert (run.resends_failures_of, run.include_unknown) == (previous, True)


def test_a_run_announced_again_is_the_same_record() -> None:
    broadcast_id, run_id = uuid4(), uuid4()

    def announce() -> object:
        return run_started(
            broadcast_id,
            run_id,
            DEFINITION,
            requested_by="u",
            content=PINNED,
            template=None,
            settings=SETTINGS,
        ).event_id

    assert announce() == announce() == event_id_for(run_id, "run_started")


def test_a_one_message_run_sends_on_its_one_channel() -> None:
    run = run_started(
        uuid4(),
        uuid4(),
        DEFINITION,
        requested_by="previewer",
        content=PINNED,
        template=None,
        settings=SETTINGS,
        channels=["sms"],
        purpose="preview",
    )
    assert (run.channels, run.purpose) == (["sms"], "preview")
    assert (run.resends_failures_of, run.include_unknown) == (None, False)
    assert DEFINITION.channels == ["email", "sms"]  # the definition is left as it was


def test_targeting_completed_carries_the_totals_under_an_id_of_its_run() -> None:
    broadcast_id, run_id = uuid4(), uuid4()
    done = targeting_completed(
        "acme", broadcast_id, run_id, contracts=3, messages=5, unreachable_contracts=1
    )
    assert done.event_id == event_id_for(run_id, "targeting_completed")
    assert (done.tenant_id, done.broadcast_id, done.run_id) == ("acme", broadcast_id, run_id)
    assert (done.contracts, done.messages, done.unreachable_contracts) == (3, 5, 1)
