"""Markers a schema's string fields carry for the model layer, which sizes every string so the
whole answer closes within `max_tokens`. Plain `Annotated` metadata kept below every layer, so
`personas/` can declare schemas without importing the model seam."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    """`Annotated` metadata: the share of a string slot a field takes."""

    weight: float


SHORT = Share(0.25)  # a name, a title, an identifier, a label: a quarter of a slot


@dataclass(frozen=True)
class Density:
    """`Annotated` metadata: the characters per token a field's bound is sized at, for text that may
    tokenise denser than usual; the field gets fewer characters for the same tokens."""

    chars_per_token: float


# A field that invites digits, or that a small model degenerates in: sized so an answer of nothing
# but digits still closes. A byte-level BPE vocabulary has no token shorter than one byte, and runs
# of digits come close to it (SmolLM2 writes every digit as its own token).
DIGITS = Density(1.0)


@dataclass(frozen=True)
class Shape:
    """`Annotated` metadata: how a field's text begins and ends, sent as a `pattern` with the bound.

    A grammar-constrained server then cannot open a problem with a run of digits (SmolLM2 ran
    "1002: 20: 20: …") or end a question without its mark. It guides decoding only; answers are not
    validated against it.
    """

    first: str = ""  # a regex character class the text starts with ("": any)
    last: str = ""  # a regex character class the text ends with ("": any)


SENTENCE = Shape(first="[A-Z]")
QUESTION = Shape(first="[A-Z]", last="[?]")
