"""The broadcast every bench sends: a French snow-removal invoice (~1 KB of HTML with accents,
a table, five variables and an unsubscribe link), and its recipients."""

import shutil
import subprocess
from decimal import Decimal
from uuid import UUID

from services.composer.context import LinkKeys
from services.composer.render import CompiledRun, compile_run
from shared.events import (
    Content,
    ContractSnapshot,
    RecipientTargeted,
    RunStarted,
    Sender,
    TenantSettings,
)

SENDER = {"address": "factures@bench.example", "name": "Déneigement Québec — Facturation"}
SUBJECT = "Votre facture de déneigement — contrat {{ contract.number }}"
HTML = """\
<html><body style="font-family: Arial, sans-serif; color: #222;">
<h2>Facture de la saison {{ contract.season }}</h2>
<p>Bonjour {{ contract.client_name }},</p>
<p>Nous vous remercions de votre confiance pour le déneigement de votre propriété située au
{{ contract.service_address }}. Veuillez trouver ci-dessous le résumé de votre contrat
numéro <strong>{{ contract.number }}</strong> pour la saison en cours.</p>
<table style="border-collapse: collapse; margin: 1em 0;">
<tr><td style="padding: 4px 12px;">Contrat</td><td>{{ contract.number }}</td></tr>
<tr><td style="padding: 4px 12px;">Adresse</td><td>{{ contract.service_address }}</td></tr>
<tr><td style="padding: 4px 12px;">Solde à payer</td><td>{{ contract.balance }}</td></tr>
</table>
<p>Le paiement est exigible au plus tard le 15 décembre. Vous pouvez régler votre solde en ligne,
par virement bancaire ou par chèque libellé à l'ordre de Déneigement Québec inc. Des frais
d'administration s'appliquent aux paiements reçus après l'échéance.</p>
<p>Pour toute question concernant votre facture, répondez simplement à ce courriel ou
communiquez avec notre service à la clientèle du lundi au vendredi, de 8 h à 17 h.</p>
<p>Merci et bon hiver!<br>L'équipe de Déneigement Québec</p>
<p style="font-size: small;"><a href="{{ unsubscribe_url }}">Se désabonner</a></p>
</body></html>
"""

TENANT = "bench"
RUN_ID = UUID(int=2)
KEYS = LinkKeys(b"bench-link-secret", "https://liens.bench.example/unsubscribe", 60)


def run_definition(*, dkim: bool = False) -> RunStarted:
    settings = TenantSettings.model_validate(
        {"dkim": {"domain": "bench.example", "selector": "bench"}} if dkim else {}
    )
    return RunStarted(
        tenant_id=TENANT,
        broadcast_id=UUID(int=1),
        run_id=RUN_ID,
        name="bench",
        requested_by="bench",
        channels=["email"],
        languages=["fr"],
        content=Content.model_validate({"email": {"fr": {"subject": SUBJECT, "html": HTML}}}),
        sender=Sender.model_validate(SENDER),
        settings=settings,
    )


def compiled_run(dkim_key: bytes | None = None) -> CompiledRun:
    return compile_run(run_definition(dkim=dkim_key is not None), KEYS, dkim_key)


def recipient(i: int) -> RecipientTargeted:
    """Recipient number `i`, with its own name, address and balance."""
    return RecipientTargeted(
        tenant_id=TENANT,
        broadcast_id=UUID(int=1),
        run_id=RUN_ID,
        recipient_id=UUID(int=10_000 + i),
        channel="email",
        address=f"client{i}@bench.example",
        contract=ContractSnapshot(
            contract_id=f"B-{i:07d}",
            number=f"B-{i:07d}",
            status="active",
            building_type="residential",
            zone="Zone 2",
            season="2026-2027",
            client_name=f"Client Bench {i} — Hélène Côté",
            service_address=f"{i} rue des Érables, Québec (Québec)",
            language="fr",
            balance=Decimal(i % 5000) + Decimal("0.45"),
            amount_paid=Decimal(0),
        ),
    )


def rsa_key() -> bytes | None:
    """A fresh 2048-bit private key (PEM), None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    return subprocess.run([openssl, "genrsa", "2048"], capture_output=True, check=True).stdout
