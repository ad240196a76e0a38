"""The database roles and the environment variables holding their passwords.

Standard library only: the local runner, which imports nothing else, reads it too.
"""

from collections.abc import Mapping

SERVICE_ROLES = ("targeting", "composer", "dispatcher", "tracker")
READER_ROLE = "broadcast_reader"
ROLES = (*SERVICE_ROLES, READER_ROLE)
ADMIN_URL_VARIABLE = "POSTGRES_ADMIN_URL"


class ProvisioningError(RuntimeError):
    """The environment does not say how to provision the roles."""


def password_variable(role: str) -> str:
    """The environment variable holding `role`'s password."""
    name = "reader" if role == READER_ROLE else role
    return f"POSTGRES_{name.upper()}_PASSWORD"


def passwords_from(environment: Mapping[str, str]) -> dict[str, str]:
    """Every role's password, read from `environment`; a missing or empty one is an error that
    names its variable."""
    missing = [password_variable(r) for r in ROLES if not environment.get(password_variable(r))]
    if missing:
        raise ProvisioningError(f"{', '.join(missing)}: not set or empty (one password per role)")
    return {role: environment[password_variable(role)] for role in ROLES}
