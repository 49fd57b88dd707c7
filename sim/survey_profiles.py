"""What the society asks of a survey profile, and what an answer drawn through one records.

A profile (a fitted calibration's way of asking the model, `pipelines/survey_profile.py`) is
handed to the society from above: the society knows only this protocol. For a choice survey it
answers, it gives each agent's answer distribution over the options; the society draws the
agent's answer from it, seeded by (run seed, step, persona, survey), so a run answers the same
however its calls interleave.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult

__all__ = ["Profiled", "SurveyAnswerer", "drawn_answer"]


class SurveyAnswerer(Protocol):
    """A survey profile as the society uses it."""

    @property
    def profile_id(self) -> str:
        """Return the profile's id (its calibration's), recorded with every answer it gives."""
        ...

    def describe(self) -> str:
        """Say in one line what the profile is (method, steering, temperature, model)."""
        ...

    def check_model(self, caller: StructuredCaller, flag: str = ...) -> None:
        """Refuse a caller of another model than the profile was fitted on."""
        ...

    async def shares(self, question: str, options: Sequence[str], *, text: str,
                     attributes: Mapping[str, object], persona_id: str, situation: str,
                     step: int, caller: StructuredCaller
                     ) -> tuple[list[float] | None, StructuredResult[Any]]:
        """Return one agent's answer distribution over the options (None: none), and the call."""
        ...


@dataclass(frozen=True)
class Profiled:
    """An agent's survey answer drawn from a profile's distribution (value None: no answer)."""

    value: Any
    profile: str
    shares: tuple[float, ...] = ()
    error: str | None = None
    records: tuple[CallRecord, ...] = ()
    cache_entries: tuple[CacheEntry, ...] = field(default_factory=tuple)


def drawn_answer(options: Sequence[str], shares: Sequence[float], rng: random.Random) -> str:
    """Draw one option from shares (aligned with the options) with a seeded generator."""
    return rng.choices(list(options), weights=list(shares))[0]
