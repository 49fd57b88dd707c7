"""The persona record shared by every stage.

Its id derives from its normalised text, so the same description imported twice is one persona.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field


def normalize_text(text: str) -> str:
    """Collapse whitespace so trivially different spellings share an id."""
    return " ".join(text.split())


def persona_id_for(text: str) -> str:
    """Return a stable 16-hex-digit id from the normalised, case-folded text."""
    return _id_of_normalized(normalize_text(text))


def _id_of_normalized(text: str) -> str:
    digest = hashlib.sha1(text.casefold().encode("utf-8")).hexdigest()
    return "p" + digest[:15]


@dataclass(frozen=True, slots=True, kw_only=True)
class Persona:
    """One persona description plus where it came from.

    Attributes:
        text: The description, e.g. "a pediatric nurse who volunteers at a rural clinic".
        source: A file path, seed, expand or text-to-persona.
        source_ref: Position inside the source (line 12, row 7, a text id).
        attributes: Structured fields kept from the source.
        hop: Persona-to-persona distance from an imported persona (0 for imported ones).
        persona_id: Derived from text when not given.
    """

    text: str
    source: str = ""
    source_ref: str = ""
    attributes: Mapping[str, object] = field(default_factory=dict)
    hop: int = 0
    persona_id: str = ""

    def __post_init__(self) -> None:
        text = normalize_text(self.text)
        if not text:
            raise ValueError("persona text is empty")
        object.__setattr__(self, "text", text)
        if not self.persona_id:
            object.__setattr__(self, "persona_id", _id_of_normalized(text))
        if self.hop < 0:
            raise ValueError(f"hop must be >= 0, got {self.hop}")
