"""The secrets only a local stack may run with, in one place, and why a service refuses them. Pure.

Every default secret in the settings is a development one: it lets `make demo`, the suite and
`docker compose up` run with nothing to configure, and anyone who has read this repository
knows it. Outside local mode (`BROADCAST_LOCAL_MODE=1`, set by the local runner, docker-compose
and the tests) a service refuses to start with one of them (`ServiceSettings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    # The local runner imports this module, and `make down` may run on a python without pydantic.
    from pydantic import SecretStr

LOCAL_MODE_VARIABLE = "BROADCAST_LOCAL_MODE"

DEVELOPMENT_LINK_SECRET = "local-development-link-secret"  # noqa: S105 - refused outside local mode
DEVELOPMENT_RETURN_PATH_SECRET = "local-development-return-path-secret"  # noqa: S105 - idem
# The local stack's database passwords: its one role's, and the per-service roles' (the same).
DEVELOPMENT_DATABASE_PASSWORDS = frozenset({"broadcast"})
DEVELOPMENT_SMS_GATEWAY_TOKEN = "local-dev-token"  # noqa: S105 - refused outside local mode
# HMAC-SHA256's own strength: a shorter key is easier to guess than the digest is to forge.
MIN_LINK_SECRET_BYTES = 32
# Every master secret that signs something a recipient holds (links, return paths).
_DEVELOPMENT_SIGNING_SECRETS = frozenset({DEVELOPMENT_LINK_SECRET, DEVELOPMENT_RETURN_PATH_SECRET})


class DevelopmentSecrets(ValueError):
    """A service asked to start outside local mode with secrets that only suit a local stack."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "\n".join(f"{p}, or {LOCAL_MODE_VARIABLE}=1 for a local stack" for p in problems)
        )
        self.problems = problems


def link_secret_problem(variable: str, secret: SecretStr | None) -> str | None:
    """Why `secret` may not sign or verify links, or return paths (shared/return_path.py),
    outside local mode; None when it may."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    advice = f"set a secret of at least {MIN_LINK_SECRET_BYTES} bytes"
    if value in _DEVELOPMENT_SIGNING_SECRETS:
        return f"{variable} is the development default; {advice}"
    if len(value.encode()) < MIN_LINK_SECRET_BYTES:
        return f"{variable} is {len(value.encode())} bytes long; {advice}"
    return None


def database_url_problem(variable: str, url: SecretStr) -> str | None:
    """Why `url` may not be used outside local mode: a password of the local stack, in the URL's
    authority or its `password` parameter. A URL without a password (a password file, a socket,
    a certificate) is the deployment's business."""
    parts = urlsplit(url.get_secret_value())
    passwords = parse_qs(parts.query).get("password", [])
    if parts.password is not None:
        passwords.append(unquote(parts.password))
    if DEVELOPMENT_DATABASE_PASSWORDS.intersection(passwords):
        return (
            f"{variable} has the local stack's database password; "
            "set the password of the service's own role"
        )
    return None


def gateway_token_problem(variable: str, token: SecretStr) -> str | None:
    """Why `token` may not authenticate to an SMS gateway outside local mode."""
    value = token.get_secret_value()
    if value == DEVELOPMENT_SMS_GATEWAY_TOKEN:
        return f"{variable} is the development default; set the gateway's token"
    if not value:
        return f"{variable} is empty; set the gateway's token"
    return None
