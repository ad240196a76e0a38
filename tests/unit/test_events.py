import ast
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from pydantic import TypeAdapter, ValidationError

import shared.events
from shared.events import (
    COMMAND_ADAPTER,
    ActionClosed,
    CreateBroadcast,
    RecipientTargeted,
    ResendBroadcast,
    RunEvent,
    RunStarted,
    StartBroadcast,
)
from shared.ids import (
    event_id_for,
    follow_up_run_id_for,
    opt_out_event_id_for,
    recipient_id_for,
    run_id_for,
)
from shared.kafka import field_errors

START = {
    "type": "start_broadcast",
    "tenant_id": "acme",
    "request_id": "r",
    "requested_by": "u",
    "broadcast_id": "8d0f6a8e-1111-4a4a-9b9b-000000000001",
}


def test_commands_are_told_apart_by_type() -> None:
    assert isinstance(COMMAND_ADAPTER.validate_python(START), StartBroadcast)


def test_a_misspelt_command_field_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError) as caught:
        COMMAND_ADAPTER.validate_python({**START, "broadcastid": "x"})
    assert ("broadcastid", "Extra inputs are not permitted") in field_errors(
        caught.value, skip="start_broadcast"
    )


def test_a_missing_type_is_reported_on_the_type_field() -> None:
    with pytest.raises(ValidationError) as caught:
        COMMAND_ADAPTER.validate_python({k: v for k, v in START.items() if k != "type"})
    assert field_errors(caught.value)[0][0] == "type"


def test_nested_paths_use_indices() -> None:
    with pytest.raises(ValidationError) as caught:
        CreateBroadcast.model_validate(
            {
                "tenant_id": "acme",
                "request_id": "r",
                "requested_by": "u",
                "name": "n",
                "criteria": [{"field": "status", "values": []}],
                "channels": ["email"],
                "languages": ["fr"],
                "content": {},
                "sender": {"address": "a@b.c"},
            }
        )
    assert field_errors(caught.value)[0][0] == "criteria[0].values"


def test_tenant_ids_are_restricted_to_safe_characters() -> None:
    with pytest.raises(ValidationError):
        COMMAND_ADAPTER.validate_python({**START, "tenant_id": "acme\nother"})


def test_events_ignore_fields_added_by_newer_producers() -> None:
    event = RecipientTargeted.model_validate_json(
        '{"tenant_id":"t","broadcast_id":"8d0f6a8e-1111-4a4a-9b9b-000000000001",'
        '"run_id":"8d0f6a8e-1111-4a4a-9b9b-000000000002",'
        '"recipient_id":"8d0f6a8e-1111-4a4a-9b9b-000000000003","channel":"email",'
        '"address":"a@b.c","added_later":1,"contract":{"contract_id":"c","number":"1",'
        '"status":"active","building_type":"residential","zone":"","season":"",'
        '"client_name":"n","service_address":"","language":"fr","balance":"1.50",'
        '"amount_paid":"0"}}'
    )
    assert str(event.contract.balance) == "1.50"


def test_ids_are_deterministic_and_distinct() -> None:
    b = uuid4()
    assert run_id_for(b, 1) == run_id_for(b, 1)
    assert run_id_for(b, 1) != run_id_for(b, 2)
    r = run_id_for(b, 1)
    assert recipient_id_for(r, "C1", "email", "A@x.example") == recipient_id_for(
        r, "C1", "email", "a@X.EXAMPLE"
    )
    assert event_id_for(r, "x") != event_id_for(r, "y")
    assert isinstance(b, UUID)


def test_a_replayed_send_lands_on_its_follow_up_run_and_another_send_on_a_new_one() -> None:
    assert follow_up_run_id_for(7, "r1") == follow_up_run_id_for(7, "r1")
    assert follow_up_run_id_for(7, "r1") != follow_up_run_id_for(7, "r2")
    assert follow_up_run_id_for(7, "r1") != follow_up_run_id_for(8, "r1")


def test_an_opt_out_is_announced_with_one_id_per_address() -> None:
    first = opt_out_event_id_for("acme", "email", "Leaving@X.example")
    assert first == opt_out_event_id_for("acme", "email", "leaving@x.example")
    assert first != opt_out_event_id_for("other", "email", "leaving@x.example")
    assert first != opt_out_event_id_for("acme", "sms", "leaving@x.example")


def test_a_resend_to_the_failures_leaves_unknown_outcomes_out_unless_asked() -> None:
    resend = {**START, "type": "resend_broadcast", "only_failed": True}
    assert COMMAND_ADAPTER.validate_python(resend) == ResendBroadcast.model_validate(
        resend | {"include_unknown": False}
    )
    asked = COMMAND_ADAPTER.validate_python(resend | {"include_unknown": True})
    assert isinstance(asked, ResendBroadcast) and asked.include_unknown


def test_run_events_carry_closed_actions_and_older_run_starts_still_read() -> None:
    runs: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)
    closed = ActionClosed(
        tenant_id="acme",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=uuid4(),
        action_id=3,
        contract_id="C-1",
        channel="email",
        address="a@x.example",
        resolution="ignore",
    )
    assert runs.validate_json(closed.model_dump_json()) == closed
    older = {
        "type": "run.started",
        "tenant_id": "acme",
        "broadcast_id": str(uuid4()),
        "run_id": str(uuid4()),
        "name": "n",
        "requested_by": "u",
        "channels": ["email"],
        "languages": ["fr"],
        "content": {"email": {"fr": {"subject": "s", "html": "h"}}},
        "sender": {"address": "a@x.example"},
    }
    started = runs.validate_python(older)
    assert isinstance(started, RunStarted)
    assert (started.resends_failures_of, started.include_unknown) == (None, False)


def defined_names(path: Path) -> set[str]:
    """The names a module defines at its top level: classes, functions and assignments."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_the_package_re_exports_every_public_name_of_its_modules() -> None:
    # Code imports from `shared.events` only: a model added to a module and not re-exported
    # would be missing for every reader of the contract.
    modules = Path(shared.events.__file__).parent.glob("*.py")
    public = {name for path in modules for name in defined_names(path) if name[0] != "_"}
    assert public - set(shared.events.__all__) == set()
    assert all(hasattr(shared.events, name) for name in shared.events.__all__)
