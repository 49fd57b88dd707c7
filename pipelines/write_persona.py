"""Write one person's persona text from their attributes with a model, kept to the attributes.

A pure async function of the attributes and a caller, so the population job only batches and
commits. An answer contradicting the attributes earns one fresh sample; if that fails too the
person gets no text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller
from personahub.personas.persona_consistency import check_persona_text
from personahub.personas.quality import gate_item
from personahub.pipelines.prompts.population import (
    WRITE_PERSONA_MAX_TOKENS,
    WRITE_PERSONA_PURPOSE,
    WrittenPersona,
    write_persona_messages,
)

__all__ = ["Written", "persona_check", "write_persona"]


@dataclass(frozen=True)
class Written:
    """What one call gave: the text (None when every answer was rejected or failed), why the last
    answer was rejected, and the call's records.
    """

    text: str | None
    rejected: str | None
    records: list[CallRecord]
    cache_entries: list[CacheEntry]


def persona_check(attributes: tuple[tuple[str, str], ...], answer: object) -> str | None:
    """Why a written persona is not kept (None when it is kept). It is a module-level function of
    tuple attributes so that a partial of it pickles for Ray workers.
    """
    text, issue = gate_item(answer)
    if issue is not None:
        return str(issue)
    problems = check_persona_text(text, dict(attributes))
    return "contradicts its attributes: " + "; ".join(problems) if problems else None


def _frozen(attributes: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in attributes.items() if v not in (None, "")))


async def write_persona(attributes: Mapping[str, object], caller: StructuredCaller, *,
                        persona_id: str | None = None) -> Written:
    """Ask the caller to write the person the attributes describe (one structured call)."""
    check = partial(persona_check, _frozen(attributes))
    result = await caller.structured(WrittenPersona, write_persona_messages(attributes),
                                     purpose=WRITE_PERSONA_PURPOSE, persona_id=persona_id,
                                     check=check, max_tokens=WRITE_PERSONA_MAX_TOKENS)
    text: str | None = None
    rejected: str | None = None
    if result.value is not None:
        cleaned, issue = gate_item(result.value)
        rejected = check(result.value)
        text = cleaned if issue is None and rejected is None else None
    elif result.records and result.records[-1].error:
        rejected = result.records[-1].error
    return Written(text, rejected, list(result.records), list(result.cache_entries))
