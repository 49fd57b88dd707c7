"""The gate label every written persona carries, which says whether a draw may take it.

Offline-engine answers pass the rules but describe no one, and imports keep junk rows. Both stay
in the hub; draws take only passed rows by default (failed: kept, never drawn by default;
offline: drawn only by an offline job).
"""

from __future__ import annotations

from typing import Final

from personahub.personas.quality import clean_persona_text, coherence_issue, screen_persona
from personahub.personas.record import Persona

PASSED: Final = "passed"
FAILED: Final = "failed"
OFFLINE: Final = "offline"
GATES: Final = (PASSED, FAILED, OFFLINE)
DRAWN: Final = (PASSED,)  # what every draw takes by default
INCLUDE_FLAG: Final = "--include-ungated"


def written_gate(offline: bool) -> str:
    """Return the label of a model's persona that passed the gate (offline for the offline engine)."""
    return OFFLINE if offline else PASSED


def checked_gate(persona: Persona) -> str:
    """Return the label of a persona written without a model, from the gate's rules."""
    text = clean_persona_text(persona.text)
    issue = screen_persona(text) or coherence_issue(text)
    return PASSED if issue is None else FAILED


def spec_is_offline(spec: str) -> bool:
    """Whether an LLM spec names only the offline engine, known before the client is built."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    return bool(parts) and all(p.split("?")[0].split(":")[0] == "offline" for p in parts)


def drawn_gates(*, include_ungated: bool = False, offline: bool = False) -> tuple[str, ...] | None:
    """Return the labels a draw takes (None: every row); an offline job takes offline rows too."""
    if include_ungated:
        return None
    return (*DRAWN, OFFLINE) if offline else DRAWN
