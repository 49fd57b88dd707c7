"""Triangle closing for expansion: does a new persona know people already near it?

Expansion alone grows trees; real social graphs close triangles. The model is shown a few
candidates and says which it knows and how: yes-answers become relations, and "same person"
merges it into the existing one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated

import duckdb
from pydantic import BaseModel, Field, create_model

from personahub.core.text_bounds import SHORT
from personahub.personas.graph import Relation
from personahub.personas.store import relation_neighbours, texts_by_id

LINK_SOURCE = "expand:link"
LINK_PURPOSE = "expand:link"
DEFAULT_LINK_CANDIDATES = 4
FALLBACK_LABEL = "acquaintance"
SAME_PERSON = "same person"

class CandidateLink(BaseModel):
    """Whether the new persona knows one candidate, and how."""

    knows: bool = Field(description="true if the new persona plausibly knows this candidate")
    relation: Annotated[str, SHORT] = Field(default="",
                                            description="how they relate, e.g. neighbour, colleague")


@lru_cache(maxsize=32)
def link_schema(count: int) -> type[BaseModel]:
    """Build a schema with exactly count entries, one per candidate in order."""
    if count < 1:
        raise ValueError("a link question needs at least one candidate")
    return create_model(
        "CandidateLinks",
        __doc__="For each candidate, in order: does the new persona know them, and how.",
        links=(list[CandidateLink], Field(min_length=count, max_length=count)),
    )


def hub_neighbours(con: duckdb.DuckDBPyConnection, persona_ids: Sequence[str]
                   ) -> dict[str, list[str]]:
    """Return each persona's stored relations in either direction, sorted by id."""
    if not persona_ids:
        return {}
    return relation_neighbours(con, persona_ids)


def pick_candidates(child: str, source: str, siblings: Sequence[str], neighbours: Sequence[str],
                    limit: int, nearest: Sequence[str] = ()) -> list[str]:
    """Return up to limit link candidates for a new persona.

    People described alongside it come first (each yes closes a triangle), then its source's
    neighbours and the nearest by embedding.
    """
    circle = [pid for pid in dict.fromkeys((*siblings, *neighbours)) if pid not in (child, source)]
    near = [pid for pid in dict.fromkeys(nearest) if pid not in (child, source)]
    picked: dict[str, None] = {}
    for position in range(max(len(circle), len(near))):
        for group in (circle, near):
            if position < len(group):
                picked.setdefault(group[position])
    return list(picked)[:limit]


def link_relations(child: str, candidates: Sequence[str], links: Sequence[CandidateLink],
                   hop: int) -> list[Relation]:
    """Return the edges a link answer adds: child -> candidate for each yes."""
    out: list[Relation] = []
    for candidate, link in zip(candidates, links, strict=False):
        label = _label(link)
        if link.knows and label != SAME_PERSON:
            out.append(Relation(child, candidate, label, hop, LINK_SOURCE))
    return out


def same_person(candidates: Sequence[str], links: Sequence[CandidateLink]) -> str | None:
    """Return the first candidate the answer calls the new persona themself, if any."""
    for candidate, link in zip(candidates, links, strict=False):
        if link.knows and _label(link) == SAME_PERSON:
            return candidate
    return None


def _label(link: CandidateLink) -> str:
    label = " ".join(link.relation.lower().split())[:40]
    if " ".join(label.replace("-", " ").split()) in {"same person", "the same person", "self",
                                                      "themself", "same"}:
        return SAME_PERSON
    return label or FALLBACK_LABEL


def texts_of(con: duckdb.DuckDBPyConnection, ids: Sequence[str],
             known: Mapping[str, str]) -> dict[str, str]:
    """Return persona texts, from this batch's new personas, else the hub."""
    missing = [i for i in ids if i not in known]
    found = dict(known)
    if missing:
        found.update(texts_by_id(con, missing))
    return found
