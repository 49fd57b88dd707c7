"""Markers a schema's string fields carry for the model layer, which sizes every string so the whole
answer closes within the token limit. Plain Annotated metadata, so personas can declare schemas
without importing the model seam.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    """The share of a string slot a field takes."""

    weight: float


SHORT = Share(0.25)  # a name, title, identifier or label: a quarter slot


@dataclass(frozen=True)
class Density:
    """The characters per token a field is sized at, for text that may tokenise denser than usual."""

    chars_per_token: float


# A field that invites digits, or that a small model degenerates in: sized so an answer of only digits
# still closes (SmolLM2 writes every digit as its own token).
DIGITS = Density(1.0)


@dataclass(frozen=True)
class Shape:
    """How a field's text begins and ends, sent as a pattern with the bound.

    A grammar-constrained server then cannot open a problem with a run of digits (SmolLM2 wrote
    "1002: 20: 20: ...") or end a question without its mark. It guides decoding; answers are not
    validated against it.
    """

    first: str = ""  # character class the text starts with ("": any)
    last: str = ""  # character class the text ends with ("": any)


SENTENCE = Shape(first="[A-Z]")
QUESTION = Shape(first="[A-Z]", last="[?]")
