"""The `personas.gate` label every written persona carries, which says whether a draw may take it.

The offline engine's answers pass the gate's rules but describe no one, and an imported data set
is kept row for row even where a row is junk. Both stay in the hub, and draws take only `passed`
rows by default: `passed` (a model answer that passed the gate, or a row whose text passes its
rules), `failed` (kept, never drawn by default), `offline` (drawn only by an offline job).
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
    """The label of a model's persona that passed the gate: `offline` for the offline engine's."""
    return OFFLINE if offline else PASSED


def checked_gate(persona: Persona) -> str:
    """The label of a persona written without a model, from the gate's rules: junk is kept, not drawn."""
    text = clean_persona_text(persona.text)
    issue = screen_persona(text) or coherence_issue(text)
    return PASSED if issue is None else FAILED


def spec_is_offline(spec: str) -> bool:
    """Whether a `--llm` spec names only the offline engine, known before the client is built."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    return bool(parts) and all(p.split("?")[0].split(":")[0] == "offline" for p in parts)


def drawn_gates(*, include_ungated: bool = False, offline: bool = False) -> tuple[str, ...] | None:
    """The labels a draw takes (None: every row). An offline job takes the offline engine's rows too."""
    if include_ungated:
        return None
    return (*DRAWN, OFFLINE) if offline else DRAWN
