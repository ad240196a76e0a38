from shared.asyncapi import SERVICES, stale


def test_committed_asyncapi_documents_match_the_code() -> None:
    assert stale() == [], "run `make asyncapi` and commit docs/asyncapi/"


def test_every_service_documents_its_topics() -> None:
    from shared.asyncapi import generate

    targeting = generate("targeting")
    for topic in (
        "broadcast.requests",
        "audience.contracts",
        "broadcast.events",
        "broadcast.runs",
        "broadcast.recipients",
    ):
        assert f"address: {topic}" in targeting
    assert "CreateBroadcast" in targeting and "StartBroadcast" in targeting
    assert set(SERVICES) == {"targeting", "composer", "dispatcher", "tracker"}
