"""Tenants' DKIM private keys, read from the secrets directory mounted into the composer."""

from pathlib import Path

from shared.events import RunStarted


def load(directory: Path | None, run: RunStarted) -> bytes | None:
    """The key the run's tenant signs with, or None when it has none (or does not sign).

    The path is built from the tenant id, never from the domain in its settings, so a tenant
    cannot sign with another tenant's key by naming its domain."""
    if run.settings.dkim is None or directory is None:
        return None
    path = directory / run.tenant_id / f"{run.settings.dkim.selector}.pem"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
