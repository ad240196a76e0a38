"""French and English labels for the codes the engine exposes, as the seeds' screens show them.

Pure: no I/O. Answers carry the label next to the code for the `language` a query asks for
(French by default), so a platform UI shows words without keeping its own copy of this table.
A code without a label is shown as itself: a new state must never break an answer.
"""

from typing import Literal

from shared.events.base import Language

Kind = Literal["broadcast_state", "outcome", "message_state", "criterion", "criterion_value"]

# code -> (French, English)
_Labels = dict[str, tuple[str, str]]

BROADCAST_STATES: _Labels = {
    "draft": ("brouillon", "draft"),
    "scheduled": ("planifiée", "scheduled"),
    # The Diffusions seed: the status "passera de « en cours » à « terminé »".
    "running": ("en cours", "in progress"),
    "paused": ("en pause", "paused"),
    "completed": ("terminé", "finished"),
    "cancelled": ("annulée", "cancelled"),
}

# The Campaigns seed: "entièrement réussie / partiellement réussie / échouée".
OUTCOMES: _Labels = {
    "fully_successful": ("entièrement réussie", "fully successful"),
    "partially_successful": ("partiellement réussie", "partially successful"),
    "failed": ("échouée", "failed"),
    "cancelled": ("annulée", "cancelled"),
}

MESSAGE_STATES: _Labels = {
    "waiting": ("en attente", "waiting"),
    "delivered": ("livré", "delivered"),
    "failed": ("échoué", "failed"),
    "cancelled": ("annulé", "cancelled"),
}

# The Diffusions seed's lists: "Statut: Actif, À renouveler", "Immeubles: Résidentiel".
CRITERIA: _Labels = {
    "status": ("Statut", "Status"),
    "building_type": ("Immeubles", "Buildings"),
    "language": ("Langue", "Language"),
    "zone": ("Zone", "Zone"),
    "season": ("Saison", "Season"),
    "contract_id": ("Contrats", "Contracts"),
    "client_name": ("Client (Nom)", "Client name"),
}

CRITERION_VALUES: _Labels = {
    "active": ("Actif", "Active"),
    "to_renew": ("À renouveler", "To renew"),
    "cancelled": ("Annulé", "Cancelled"),
    "prospect": ("Prospect", "Prospect"),
    "suspended": ("Suspendu", "Suspended"),
    "residential": ("Résidentiel", "Residential"),
    "commercial": ("Commercial", "Commercial"),
    "industrial": ("Industriel", "Industrial"),
    "institutional": ("Institutionnel", "Institutional"),
    "fr": ("Français", "French"),
    "en": ("Anglais", "English"),
}

_TABLES: dict[Kind, _Labels] = {
    "broadcast_state": BROADCAST_STATES,
    "outcome": OUTCOMES,
    "message_state": MESSAGE_STATES,
    "criterion": CRITERIA,
    "criterion_value": CRITERION_VALUES,
}


def labels(kind: Kind, code: str) -> tuple[str, str]:
    """(French, English) for `code`; the code itself in both when it has no label."""
    return _TABLES[kind].get(code, (code, code))


def label(kind: Kind, code: str | None, language: Language) -> str | None:
    """The label of `code` in `language`; None for no code (a run without an outcome yet)."""
    if code is None:
        return None
    french, english = labels(kind, code)
    return french if language == "fr" else english
