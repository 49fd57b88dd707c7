"""Human survey answers in memory: questions, their options, and answer counts per group.

Every input layout is read into one Survey, so calibration never sees a file format. Substantive
options come first, each with an ordinal position, then refusals, counted apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from personahub.core.errors import InputFileError
from personahub.personas.demographics import group_conditions

__all__ = ["OVERALL", "GroupKey", "Question", "Survey"]

OVERALL = "Overall"
GroupKey = tuple[str, tuple[str, ...]]  # (attribute, group labels)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: options in order, substantive ones first."""

    qid: str
    text: str
    options: tuple[str, ...]
    ordinal: tuple[float, ...]  # one position per substantive option

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"question {self.qid}: no options")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"question {self.qid}: an option is listed twice")
        if not 0 < len(self.ordinal) <= len(self.options):
            raise ValueError(f"question {self.qid}: {len(self.ordinal)} ordinal values for "
                             f"{len(self.options)} options")

    @property
    def substantive(self) -> tuple[str, ...]:
        """The options an answer distribution is over."""
        return self.options[: len(self.ordinal)]

    @property
    def refusals(self) -> tuple[str, ...]:
        """Options that are not an opinion ("Refused")."""
        return self.options[len(self.ordinal):]

    @property
    def is_ordinal(self) -> bool:
        """Scored by position (Wasserstein) rather than by category (Jensen-Shannon)."""
        return len(set(self.ordinal)) > 1


@dataclass(frozen=True)
class Survey:
    """Questions and answer counts per group, and where they were read."""

    questions: dict[str, Question]
    counts: dict[str, dict[GroupKey, tuple[float, ...]]]
    source: str = field(default="", compare=False)
    # question ids read but left out as unscorable, with why
    skipped: dict[str, str] = field(default_factory=dict, compare=False)
    # how the counts were made from respondents (weighted or not); empty: counts as given
    weighting: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for qid, groups in self.counts.items():
            width = len(self.questions[qid].options)
            for key, vector in groups.items():
                if len(vector) != width:
                    raise ValueError(f"question {qid}, group {key}: {len(vector)} counts for "
                                     f"{width} options")

    def groups(self, qid: str) -> Iterator[tuple[str, tuple[str, ...], np.ndarray]]:
        """(attribute, group, counts) of a question, in reading order (Overall left out)."""
        for (attribute, group), vector in self.counts.get(qid, {}).items():
            if attribute != OVERALL:
                yield attribute, group, np.asarray(vector, dtype=float)

    def conditions(self, attribute: str, group: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """Return the canonical (key, slug) pairs a group stands for."""
        return group_conditions(attribute, group)

    def carve(self, attribute: str, group: tuple[str, ...]) -> tuple[str, ...]:
        """Return the group as carve conditions (e.g. party=democrat); empty when no persona can answer."""
        return tuple(f"{key}={slug}" for key, slug in self.conditions(attribute, group))

    def overall(self, qid: str) -> np.ndarray:
        """Everyone's counts: the Overall group if given, else the attribute covering most answers."""
        groups = self.counts.get(qid, {})
        explicit = groups.get((OVERALL, (OVERALL,)))
        if explicit is not None:
            return np.asarray(explicit, dtype=float)
        totals: dict[str, np.ndarray] = {}
        for (attribute, group), vector in groups.items():
            if len(group) == 1:
                totals[attribute] = totals.get(attribute, 0) + np.asarray(vector, dtype=float)
        if not totals:
            return np.zeros(len(self.questions[qid].options))
        return max(totals.values(), key=lambda v: float(v.sum()))  # ties: the first read

    def attributes(self) -> list[str]:
        """Return the attributes the survey has groups for, in reading order."""
        seen: dict[str, None] = {}
        for groups in self.counts.values():
            for attribute, _ in groups:
                if attribute != OVERALL:
                    seen.setdefault(attribute)
        return list(seen)


def match_option(question: Question, option: str) -> int | None:
    """Index of an option among the question's: exact, else ignoring case and spacing (OpinionQA's W42
    spells "noR" where info.csv has "nor").
    """
    try:
        return question.options.index(option)
    except ValueError:
        pass
    folded = " ".join(option.split()).casefold()
    matches = [i for i, o in enumerate(question.options) if " ".join(o.split()).casefold() == folded]
    return matches[0] if len(matches) == 1 else None


def add_counts(into: dict[GroupKey, list[float]], key: GroupKey, question: Question,
               answers: Mapping[str, float], name: str, line: int | None, where: str) -> None:
    """Add one group's option -> count map, refusing unknown options and bad counts."""
    vector = into.setdefault(key, [0.0] * len(question.options))
    for option, count in answers.items():
        index = match_option(question, option)
        if index is None:
            raise InputFileError(name, line, f"{where}: option {option!r} is not an option of "
                                             f"question {question.qid}")
        if isinstance(count, bool) or not isinstance(count, int | float) or not count >= 0 \
                or not np.isfinite(count):
            raise InputFileError(name, line, f"{where}: count {count!r} for {option!r} is not a "
                                             "number >= 0")
        vector[index] += float(count)
