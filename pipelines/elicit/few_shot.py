"""Elicit a stated distribution shown the group's answers to K other questions (few-shot:K).

The K questions are drawn once per job, seeded, and shown for every other question; they are not
scored in the row. Showing a group's other answers came closer to OpinionQA groups than the
stated shares alone (arXiv 2411.05403).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from personahub.core.contracts import StructuredCaller
from personahub.core.errors import UsageError
from personahub.pipelines.elicit.base import Reading, Respondent, Setup, Tunable, group_key
from personahub.pipelines.elicit.distribution import Distribution

if TYPE_CHECKING:
    from personahub.analysis.survey import Survey

__all__ = ["FEW_SHOT", "FewShot", "shots_text"]

FEW_SHOT = "few-shot"


def _percent(shares: Sequence[float]) -> list[str]:
    return [f"{round(100 * s)}%" for s in shares]


def shots_text(survey: Survey, shots: Sequence[str], attribute: str,
               labels: tuple[str, ...]) -> str:
    """Write the group's answer shares to the shown questions as prompt text."""
    blocks = []
    for qid in shots:
        counts = survey.counts.get(qid, {}).get((attribute, labels))
        if counts is None or float(np.sum(counts)) <= 0:
            continue
        question = survey.questions[qid]
        shares = np.asarray(counts, float) / float(np.sum(counts))
        lines = [f"- {o}: {p}" for o, p in zip(question.options, _percent(shares.tolist()),
                                                 strict=True)]
        blocks.append(f"Question: {question.text}\n" + "\n".join(lines))
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class FewShot(Distribution):
    """Ask for each group's shares, shown its human answers to K held-out questions."""

    k: int = 1

    NAME = FEW_SHOT
    SYNTAX = f"{FEW_SHOT}:K"
    ARG_NOTE = "K a whole number from 1"
    HELP = "as distribution, shown the group's answers to K other questions, held out of its score"
    held_out_note = " (the questions it shows are not scored)"
    tunables = (Tunable("k", 1, math.inf, whole=True,
                        doc="the questions whose human answers each prompt shows"),)

    @classmethod
    def parse(cls, arg: str | None) -> FewShot:
        """Build few-shot:K from K.

        Raises:
            ValueError: K is missing or not a whole number from 1.
        """
        if arg is None or not (arg.isascii() and arg.isdigit()) or int(arg) < 1:
            raise ValueError(f"{FEW_SHOT}:K takes a whole number K from 1, not {arg!r}")
        return cls(int(arg))

    @property
    def label(self) -> str:
        """Return "few-shot:K"."""
        return f"{FEW_SHOT}:{self.k}"

    def held_out(self, questions: Sequence[str], seed: int) -> tuple[str, ...]:
        """Return the K questions it shows, drawn seeded from the job's.

        Raises:
            UsageError: K leaves no question to score.
        """
        if self.k >= len(questions):
            raise UsageError(f"--elicit {self.label}: the calibration asks {len(questions)} "
                             "questions; K must leave at least one to score")
        return tuple(random.Random(f"{seed}:{self.label}").sample(sorted(questions), self.k))

    def shown(self, text: str) -> dict[str, str]:
        """Show the text as the group's answers to other questions."""
        return {"shots": text}

    def texts(self, setup: Setup) -> dict[str, str]:
        """Return each group's answer shares to the held-out questions as prompt text."""
        shown = self.held_out(setup.questions, setup.seed)
        return {group_key(attribute, " / ".join(labels)): shots_text(setup.survey, shown,
                                                                     attribute, labels)
                for attribute, labels in setup.groups}

    async def distribution_for(self, question: str, options: Sequence[str],
                               respondent: Respondent, caller: StructuredCaller, *,
                               purpose: str | None = None) -> Reading:
        """Ask for the shares of people like the persona, shown the answers in its context.

        Raises:
            UsageError: the respondent carries no shown answers (a profile's examples as text).
        """
        if not respondent.context:
            raise UsageError(f"{self.label}: give the answers it shows (a profile's examples) "
                             "as the respondent's context")
        return await super().distribution_for(question, options, respondent, caller,
                                              purpose=purpose)
