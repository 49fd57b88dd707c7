"""Markers a schema's string fields carry for ``models.bounds`` (which sizes every string a
model fills so that the whole answer closes within ``max_tokens``).

They are plain data in ``typing.Annotated`` metadata (pydantic ignores them), kept here, below
every layer, so that the data side (``personas/``) can declare its schemas without importing
the model seam.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    """``Annotated`` metadata: the share of a string slot a field takes (pydantic ignores it)."""

    weight: float


SHORT = Share(0.25)  # a name, a title, an identifier, a label: a quarter of a slot


@dataclass(frozen=True)
class Density:
    """``Annotated`` metadata: the characters per token a field's bound is sized at, when the
    text it invites may tokenise below ``CHARS_PER_TOKEN`` (pydantic ignores it). The field
    keeps its slot's share of the budget in tokens and gets fewer characters for it."""

    chars_per_token: float


# A field that invites numbers (a math or logic problem), or that a small model degenerates in
# (persona fields: "A_JM_N_N_C_M_G…"): sized so that even an answer of
# nothing but digits closes in time. A byte-level BPE vocabulary (SmolLM2's, GPT's, Llama 3's,
# Qwen's) has no token shorter than one byte, so ASCII text is never below one character a token;
# runs of digits come close to it (SmolLM2 writes every digit as its own token).
DIGITS = Density(1.0)


@dataclass(frozen=True)
class Shape:
    """``Annotated`` metadata: how a field's text begins and ends, sent to the server as a
    ``pattern`` that carries the field's bound too (``models.bounds``; pydantic ignores it).

    Why: a grammar-constrained server then cannot open a problem with a run of digits (SmolLM2
    ran "1002: 20: 20: …" to its bound) or close a question without its question mark. The
    pattern guides decoding only: answers are not validated against it (a server that ignores
    patterns still has its answers judged by the quality gate)."""

    first: str = ""  # a regex character class the text starts with ("" : any)
    last: str = ""  # a regex character class the text ends with ("" : any)


SENTENCE = Shape(first="[A-Z]")  # starts like a sentence
QUESTION = Shape(first="[A-Z]", last="[?]")  # one question: a capital first, a question mark last
