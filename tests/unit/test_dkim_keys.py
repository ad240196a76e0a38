"""Where the composer finds a tenant's DKIM key, and a signed message end to end."""

import base64
import email
import email.policy
import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type information
import pytest

from services.composer import dkim_keys
from services.composer.context import LinkKeys
from services.composer.render import compile_run, render
from shared.events import ContractSnapshot, MessageRendered, RecipientTargeted, RunStarted


def run(tenant: str, domain: str = "neige.example") -> RunStarted:
    return RunStarted.model_validate(
        {
            "tenant_id": tenant,
            "broadcast_id": uuid4(),
            "run_id": uuid4(),
            "name": "n",
            "requested_by": "u",
            "channels": ["email"],
            "languages": ["fr"],
            "content": {"email": {"fr": {"subject": "Avis à {{ contract.number }}", "html": "x"}}},
            "sender": {"address": f"avis@{domain}", "name": "Déneigement"},
            "settings": {"dkim": {"domain": domain, "selector": "s1"}},
        }
    )


def test_the_key_is_found_by_tenant_never_by_domain(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "s1.pem").write_bytes(b"KEY")
    assert dkim_keys.load(tmp_path, run("acme")) == b"KEY"
    # Another tenant naming acme's domain does not get acme's key.
    assert dkim_keys.load(tmp_path, run("other", domain="neige.example")) is None
    assert dkim_keys.load(None, run("acme")) is None


def test_a_tenant_with_a_key_sends_messages_that_verify() -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    private = subprocess.run([openssl, "genrsa", "1024"], capture_output=True, check=True).stdout
    public = subprocess.run(
        [openssl, "rsa", "-pubout", "-outform", "DER"], input=private, capture_output=True
    ).stdout
    started = run("acme")
    compiled = compile_run(started, LinkKeys(b"k", "https://e.example/u", 60), private)
    recipient = RecipientTargeted(
        tenant_id="acme",
        broadcast_id=started.broadcast_id,
        run_id=started.run_id,
        recipient_id=uuid4(),
        channel="email",
        address="client@example.com",
        contract=ContractSnapshot(
            contract_id="C-1",
            number="C-1",
            status="active",
            building_type="residential",
            zone="",
            season="",
            client_name="Élise",
            service_address="",
            language="fr",
            balance=Decimal(0),
            amount_paid=Decimal(0),
        ),
    )
    output = render(compiled, recipient, datetime.now(UTC))
    assert isinstance(output, MessageRendered), output
    raw = output.body.encode()
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    assert dkim.verify(raw, dnsfunc=lambda _name, timeout=5: record)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert "d=neige.example" in str(parsed["DKIM-Signature"]).replace(" ", "")
