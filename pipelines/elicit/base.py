"""Define what an elicitation method is, so each method is one module and the job asks none by name.

A method is a frozen dataclass: the registry parses its `--elicit NAME[:ARG]` spec into one
(`parse`), the calibration job plans its asks per question x group (`asks`, `held_out`, `texts`)
and has it make each call (`ask`), and the scorer turns its stored answers into a distribution
per question x group (`distributions`). A fit reads and sets its tunable parameters (`tunables`,
`params`, `tuned`), and a run asks it for one persona's answer distribution
(`distribution_for`). Its class variables say how its rows are scored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

import numpy as np

from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
from personahub.core.errors import UsageError

if TYPE_CHECKING:
    import duckdb

    from personahub.analysis.survey import Question, Survey

__all__ = ["Answer", "Ask", "AskInputs", "ElicitMethod", "GroupCounts", "GroupKey", "Personas",
           "QuestionPlan", "Reading", "Respondent", "Setup", "Stored", "Tunable", "group_key",
           "respondent_group", "split_group_key", "stated_vector"]

GroupKey = tuple[str, str]  # (attribute, group labels joined by " / ")
GroupCounts = dict[tuple[str, str, str], np.ndarray]  # (question, attribute, group) -> counts
Personas = Mapping[str, tuple[str, Mapping[str, str]]]  # persona id -> (text, demographics)


def group_key(attribute: str, group: str) -> str:
    """Name a group-level ask's respondent "attribute=group"."""
    return f"{attribute}={group}"


def split_group_key(key: str) -> tuple[str, str]:
    """Split a group_key back into its attribute and group."""
    attribute, _, group = key.partition("=")
    return attribute, group


def stated_vector(question: Question, shares_json: str) -> np.ndarray:
    """Read stored shares (JSON, option to share) as a vector over the question's options."""
    shares = json.loads(shares_json)
    return np.array([float(shares.get(o, 0.0)) for o in question.options])


class Ask(NamedTuple):
    """One call: a question, the row it answers for, and who answers (a persona id, a group key,
    an archetype, or "#k" with no persona).

    The row is a method's label ("distribution", "few-shot:2"), one of the sample method's
    steerings ("persona", "attributes", ...), or "none" for the no-persona baseline; it is stored
    in the answers' `steering` column.
    """

    question_id: str
    method: str
    respondent: str
    persona_id: str | None


class Answer(NamedTuple):
    """Hold what one ask gave: the option chosen (None when no answer was valid), its reason, the call.

    A method answering with a distribution gives its modal option and the distribution as JSON
    (option -> share) in the reason.
    """

    ask: Ask
    option: str | None
    reason: str | None
    call: StructuredResult[Any]

    @property
    def records(self) -> list[CallRecord]:
        """Return the call's attempts."""
        return list(self.call.records)

    @property
    def cache_entries(self) -> list[CacheEntry]:
        """Return the cache entries the call made."""
        return list(self.call.cache_entries)


class QuestionPlan(NamedTuple):
    """Describe whom one question is put to: its groups with a panel and their personas."""

    question_id: str
    groups: tuple[GroupKey, ...]  # the question's groups that have a panel
    people: tuple[str, ...]  # their panel personas, each once, in panel order
    steerings: tuple[str, ...]  # --steering: what a persona's prompt shows of the person


@dataclass(frozen=True)
class Setup:
    """Hold what a method may prepare its prompt texts from, once per job."""

    survey: Survey
    questions: tuple[str, ...]  # the questions the job asks
    groups: Sequence[tuple[str, tuple[str, ...]]]  # every group once: (attribute, labels)
    panels: Mapping[GroupKey, Sequence[str]]  # group -> its panel's persona ids
    personas: Personas
    seed: int


@dataclass(frozen=True)
class AskInputs:
    """Hold what an asker hands a method for each ask: nothing of the database, so a Ray worker
    gets a copy.
    """

    questions: Mapping[str, tuple[str, tuple[str, ...]]]  # id -> (text, offered options)
    personas: Personas
    groups: Mapping[str, str]  # respondent -> who it is as prompt lines (a group, an archetype)
    texts: Mapping[str, Mapping[str, str]]  # method label -> respondent -> its own prompt text


@dataclass
class Stored:
    """Hold a job's stored answers as the scorer hands them to each method."""

    survey: Survey
    questions: tuple[str, ...]  # the questions the job asked
    seed: int
    counted: Mapping[str, GroupCounts]  # steering -> its panels' answer counts
    stated: Mapping[str, GroupCounts]  # row label -> its group-level answers as vectors
    con: duckdb.DuckDBPyConnection  # for a method that reads more (archetypes: their members)
    job_id: str
    panels: Mapping[GroupKey, Sequence[str]]


class Tunable(NamedTuple):
    """Describe one parameter a fit may choose on training questions."""

    name: str
    low: float
    high: float
    whole: bool  # a whole number (else a real one)
    doc: str
    optional: bool = False  # None is a value: the job fits it on its held-out questions

    def check(self, label: str, value: float | None) -> None:
        """Refuse a value the parameter cannot take, in one line naming the method.

        Raises:
            UsageError: None where a value is needed, a fraction where a whole number is, or a
                value outside the bounds.
        """
        if value is None:
            if not self.optional:
                raise UsageError(f"{label}: {self.name} needs a value")
            return
        if self.whole and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{label}: {self.name} must be a whole number, not {value!r}")
        if not self.low <= value <= self.high:
            raise UsageError(f"{label}: {self.name} {value!r} is outside "
                             f"[{self.low:g}, {self.high:g}]")


class Respondent(NamedTuple):
    """Describe one persona asked at run time, and what of it the prompt shows."""

    text: str
    attributes: Mapping[str, str]
    steering: str = "persona"  # persona, attributes or attributes+persona
    context: str = ""  # a method's own material: a few-shot method's shown answers
    persona_id: str | None = None
    situation: str = ""  # a run's context sections (world, events, memory); none in calibration


def respondent_group(respondent: Respondent) -> str:
    """Describe a persona as a group-level prompt's Group section shows it: its demographics, its
    text, or both, as its steering says.
    """
    from personahub.pipelines.prompts.population import attribute_lines

    lines = attribute_lines(respondent.attributes) or "- (no demographics known)"
    if respondent.steering == "attributes":
        return lines
    if respondent.steering == "attributes+persona":
        return f"{respondent.text}\n\n{lines}"
    if respondent.steering == "persona":
        return respondent.text
    raise UsageError(f"steering {respondent.steering!r}: use persona, attributes or "
                     "attributes+persona")


class Reading(NamedTuple):
    """Hold one persona's answer distribution (None when the call gave none) and the call."""

    shares: dict[str, float] | None
    call: StructuredResult[Any]


@dataclass(frozen=True)
class ElicitMethod:
    """Describe one way of eliciting the model's answers; subclasses override what differs.

    The defaults describe a method asking once per question x group whose stored answer is a
    distribution (a stated one, or probabilities): no panel, every question scored.
    """

    NAME: ClassVar[str]  # the registry's key: the spec's head, or the whole spec
    SYNTAX: ClassVar[str]  # as --elicit takes it ("few-shot:K")
    ARG_NOTE: ClassVar[str] = ""  # what ARG is, for the usage line ("K a whole number from 1")
    HELP: ClassVar[str]  # what it does and costs, for --elicit's help
    # each panel member is asked: scored beside the panel-size baselines (perfect_panel) and
    # tempered by --dispersion temper
    sampled: ClassVar[bool] = False
    # its counts are one answer per panel member (asked or drawn): panel sizes, the interval over
    # panel answers and failures per panel member apply; else one answer per question x group
    from_panel: ClassVar[bool] = False
    asks_held_out: ClassVar[bool] = False  # its held-out questions are asked too (to fit on)
    probes: ClassVar[bool] = False  # one ask is made before anything is written (a capability)
    held_out_note: ClassVar[str] = ""  # why its held-out questions are not scored, for the console
    tunables: ClassVar[tuple[Tunable, ...]] = ()
    # distribution_for answers for one persona alone (a fit may choose it for a survey profile)
    answers_agents: ClassVar[bool] = True

    @classmethod
    def parse(cls, arg: str | None) -> Self:
        """Build the method from its spec's ARG (None: no ":ARG").

        Raises:
            ValueError: the method takes no such ARG (the registry words the usage error).
        """
        if arg is not None:
            raise ValueError(f"{cls.NAME} takes no argument")
        return cls()

    @property
    def label(self) -> str:
        """Return its spec and row name, as --elicit takes it and the tables show it."""
        return self.NAME

    def held_out(self, questions: Sequence[str], seed: int) -> tuple[str, ...]:
        """Return the questions its row does not score (seeded, the same on resume).

        Raises:
            UsageError: no question would be left to score.
        """
        return ()

    def rows(self, steerings: Sequence[str]) -> tuple[str, ...]:
        """Return the model rows it is scored as (one, but the sample method's per steering)."""
        return (self.label,)

    def asks(self, plan: QuestionPlan, held_out: Collection[str]) -> list[Ask]:
        """Plan one question's asks: one per group with a panel, unless the question is held out."""
        if plan.question_id in held_out and not self.asks_held_out:
            return []
        return [Ask(plan.question_id, self.label, group_key(*key), None) for key in plan.groups]

    def ask_count(self, plan: QuestionPlan, held_out: Collection[str]) -> int:
        """Count one question's asks without making them (a plan too large is refused first)."""
        if plan.question_id in held_out and not self.asks_held_out:
            return 0
        return len(plan.groups)

    def texts(self, setup: Setup) -> dict[str, str]:
        """Return its own prompt text per respondent (none by default)."""
        return {}

    async def ask(self, ask: Ask, inputs: AskInputs, caller: StructuredCaller) -> Answer:
        """Make one ask's call."""
        raise NotImplementedError(f"{type(self).__name__} does not ask")

    def distributions(self, stored: Stored) -> dict[str, GroupCounts]:
        """Return each of its rows' distribution per question x group, from the stored answers."""
        return {self.label: dict(stored.stated.get(self.label, {}))}

    def fitted(self, stored: Stored) -> dict[str, float]:
        """Return the parameters a job fitted on its held-out questions (none by default)."""
        return {}

    async def distribution_for(self, question: str, options: Sequence[str],
                               respondent: Respondent, caller: StructuredCaller, *,
                               purpose: str | None = None) -> Reading:
        """Ask for one persona's answer distribution over a question's options, at run time.

        Args:
            question: the question's text.
            options: the options it offers.
            respondent: the persona and what of it the prompt shows.
            caller: the model client.
            purpose: the calls' label in the call log (default: the method's calibration one).

        Returns:
            The shares by option, normalised (None when the call gave none), and the call.
        """
        raise NotImplementedError(f"{type(self).__name__} does not answer for a persona")

    def params(self) -> dict[str, float | int | None]:
        """Return its tunable parameters' current values."""
        return {t.name: getattr(self, t.name) for t in self.tunables}

    def tuned(self, **values: float | int | None) -> Self:
        """Return a copy with some tunable parameters set (a fit's choice).

        Raises:
            UsageError: an unknown parameter, or a value outside its bounds.
        """
        known = {t.name: t for t in self.tunables}
        for name, value in values.items():
            if name not in known:
                raise UsageError(f"{self.label}: no tunable parameter {name!r}; it has "
                                 f"{', '.join(known) or 'none'}")
            known[name].check(self.label, value)
        return dataclasses.replace(self, **values)
