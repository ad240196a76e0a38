"""The database roles as code: passwords from the environment, each service's default URL, and
the reader's grants in the migrations. tests/integration/test_database_roles.py runs them."""

import importlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deploy.local import stack
from deploy.postgres import roles
from deploy.postgres.credentials import (
    READER_ROLE,
    ROLES,
    SERVICE_ROLES,
    ProvisioningError,
    password_variable,
    passwords_from,
)

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
_VIEW = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(\w+\.\w+)", re.IGNORECASE)
_GRANT = re.compile(r"GRANT\s+SELECT\s+ON\s+([\w.,\s]+?)\s+TO\s+(\w+)", re.IGNORECASE)


def test_one_role_per_service() -> None:
    services = sorted(p.parent.name for p in SERVICES_DIR.glob("*/migrations"))
    assert sorted(SERVICE_ROLES) == services


def test_each_password_comes_from_a_variable_named_after_its_role() -> None:
    assert password_variable("targeting") == "POSTGRES_TARGETING_PASSWORD"
    assert password_variable(READER_ROLE) == "POSTGRES_READER_PASSWORD"
    environment = {password_variable(role): f"secret-{role}" for role in ROLES}
    assert passwords_from(environment) == {role: f"secret-{role}" for role in ROLES}


def test_a_missing_or_empty_password_is_named() -> None:
    environment = {password_variable(role): "x" for role in ROLES}
    del environment["POSTGRES_TRACKER_PASSWORD"]
    environment["POSTGRES_READER_PASSWORD"] = ""
    with pytest.raises(ProvisioningError) as refused:
        passwords_from(environment)
    assert str(refused.value) == (
        "POSTGRES_TRACKER_PASSWORD, POSTGRES_READER_PASSWORD: not set or empty "
        "(one password per role)"
    )


def test_the_command_refuses_to_run_without_the_administrators_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POSTGRES_ADMIN_URL", raising=False)
    with pytest.raises(SystemExit, match="POSTGRES_ADMIN_URL: not set"):
        roles.main()


@pytest.mark.parametrize("service", SERVICE_ROLES)
def test_each_service_connects_as_its_own_role_by_default(service: str) -> None:
    settings = importlib.import_module(f"services.{service}.settings").Settings()
    url = urlsplit(settings.database_url.get_secret_value())
    assert (url.username, url.password) == (service, stack.POSTGRES_PASSWORD)
    assert (url.hostname, url.port, url.path) == (
        stack.HOST,
        stack.POSTGRES_PORT,
        "/" + stack.POSTGRES_DB,
    )


@pytest.mark.parametrize("service", SERVICE_ROLES)
def test_every_view_is_granted_to_the_reader(service: str) -> None:
    sql = "\n".join(
        p.read_text() for p in sorted((SERVICES_DIR / service / "migrations").glob("*.sql"))
    )
    views = set(_VIEW.findall(sql))
    granted = {
        name.strip()
        for names, role in _GRANT.findall(sql)
        if role == READER_ROLE
        for name in names.split(",")
    }
    assert views <= granted, f"{service}: views not granted to {READER_ROLE}: {views - granted}"
    assert all(name.startswith(f"{service}.") for name in granted)
