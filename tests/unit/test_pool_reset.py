"""A service that keeps no session state spares the reset query at every release; the others
keep asyncpg's."""

import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import db

SERVICES = Path(__file__).parents[2] / "services"


async def pool_options(monkeypatch: pytest.MonkeyPatch, **flags: bool) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def create_pool(dsn: str, **options: Any) -> object:
        seen.update(options)
        return object()

    monkeypatch.setattr(asyncpg, "create_pool", create_pool)
    await db.create_pool("postgresql://nowhere/db", size=3, **flags)
    return seen


async def test_sessions_are_reset_unless_the_service_says_it_keeps_no_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (await pool_options(monkeypatch))["reset"] is None  # asyncpg's own reset
    kept = (await pool_options(monkeypatch, reset_sessions=False))["reset"]
    assert kept is not None
    assert await kept(object()) is None  # no query: it never touches the connection


@pytest.mark.parametrize("service", ["dispatcher", "tracker"])
def test_a_service_that_skips_the_reset_keeps_no_session_state(service: str) -> None:
    """What asyncpg's reset would undo: a SET statement (not UPDATE's SET), LISTEN, a cursor
    WITH HOLD, a session advisory lock, set_config."""
    root = SERVICES / service
    code = "\n".join(p.read_text() for p in [*root.rglob("*.py"), *root.glob("migrations/*.sql")])
    # The SQL here is upper case; a docstring's "Set ..." is no statement.
    session_state = re.compile(r"[\"';]\s*(SET|LISTEN)\s|WITH HOLD|advisory_lock|set_config")
    assert session_state.findall(code) == []
    assert "reset_sessions=False" in (root / "app.py").read_text()
