"""Which personas a draw may take: the ``personas.gate`` label every written persona carries.

Why a label and not only the ``rejected`` table: the offline engine's answers pass the gate's
rules (they are built to) but describe no one ("the parent of someone known for line-following
nurse"), and an imported data set is someone's data, kept row for row even where a row is junk.
Both stay in the hub; the label says what each row is, and draws (``personas sample``,
synthesis, a run's setup, calibration) take only ``DRAWN`` rows unless asked for the others:

- ``passed``: a model's answer that passed the quality gate, or a row written without a model
  (an import, the seed personas, a scenario's people) whose text passes the gate's rules;
- ``failed``: such a row whose text fails them (kept, never drawn by default);
- ``offline``: written by the offline engine (drawn by default only by an offline job, so the
  offline quick start and its goldens are unchanged).
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
    """The label of a model's persona that passed the gate: ``offline`` for the offline engine's."""
    return OFFLINE if offline else PASSED


def checked_gate(persona: Persona) -> str:
    """The label of a persona written without a model: its text run through the gate's rules
    (form and coherence), so junk in an imported file is kept but not drawn."""
    text = clean_persona_text(persona.text)
    issue = screen_persona(text) or coherence_issue(text)
    return PASSED if issue is None else FAILED


def spec_is_offline(spec: str) -> bool:
    """Whether a ``--llm`` spec names only the offline engine (``offline``, ``offline:...``; a
    failover list of them): known before the client is built."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    return bool(parts) and all(p.split("?")[0].split(":")[0] == "offline" for p in parts)


def drawn_gates(*, include_ungated: bool = False, offline: bool = False) -> tuple[str, ...] | None:
    """The labels a draw takes (None: every row). An offline job takes the offline engine's
    rows too: the offline engine feeding the offline engine is its own closed world."""
    if include_ungated:
        return None
    return (*DRAWN, OFFLINE) if offline else DRAWN
