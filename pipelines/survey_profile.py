"""A survey profile: the way of asking a model that `calibrate --fit` chose, as the society uses it.

A profile is an elicitation method, what its prompts show of a persona (the steering), a
temperature and, for few-shot, the example questions with each group's human answers. For one
persona it gives an answer distribution: the method's `distribution_for` with the persona (and,
in a run, what it saw and remembers as the prompt's context sections), scaled `p^(1/T)`. The fit
asks every configuration it tries through `ProfileConfig.reading`, and a run asks through
`SurveyProfile.shares`, so a run asks exactly what the fit scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from personahub.analysis import calibration_store as store
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.errors import UsageError
from personahub.personas.demographics import canonical
from personahub.pipelines.calibrate_data import demographics_of
from personahub.pipelines.elicit import parse
from personahub.pipelines.elicit.base import ElicitMethod, Reading, Respondent
from personahub.pipelines.elicit.temperature import scaled

if TYPE_CHECKING:
    from personahub.analysis.survey import Survey
    from personahub.pipelines.calibrate_data import Group

__all__ = ["PROFILE_PURPOSE", "Example", "GroupAnswers", "ProfileConfig", "SurveyProfile",
           "examples_from_json", "examples_json", "examples_of", "examples_text", "load_profile",
           "model_name", "tempered"]

PROFILE_PURPOSE = "survey:profile"  # a run's survey calls answered through a profile


@dataclass(frozen=True)
class GroupAnswers:
    """One group's people's answers to an example question, and the demographics it stands for."""

    attribute: str
    group: str
    conditions: tuple[tuple[str, str], ...]
    counts: tuple[float, ...]

    def holds(self, attributes: Mapping[str, object]) -> bool:
        """Tell whether a persona with these (canonical) demographics is in the group."""
        return bool(self.conditions) and all(canonical(key, attributes.get(key)) == slug
                                              for key, slug in self.conditions)


@dataclass(frozen=True)
class Example:
    """A question whose human answers a few-shot profile shows, per group and for everyone."""

    question_id: str
    text: str
    options: tuple[str, ...]
    groups: tuple[GroupAnswers, ...]
    overall: tuple[float, ...]


def examples_of(survey: Survey, question_ids: Sequence[str],
                groups: Mapping[str, Sequence[Group]]) -> tuple[Example, ...]:
    """Build the examples of a few-shot configuration from the survey's human answers.

    Args:
        survey: the human answers.
        question_ids: the questions shown, in order.
        groups: each question's scored groups (their demographics).

    Returns:
        One Example per question.
    """
    out = []
    for qid in question_ids:
        question = survey.questions[qid]
        vectors = survey.counts.get(qid, {})
        out.append(Example(qid, question.text, question.options, tuple(
            GroupAnswers(g.attribute, g.key[1], g.conditions,
                         tuple(float(c) for c in vectors[(g.attribute, g.labels)]))
            for g in groups.get(qid, ())), tuple(float(c) for c in survey.overall(qid))))
    return tuple(out)


def _percent_lines(options: Sequence[str], counts: Sequence[float]) -> str:
    total = float(np.sum(counts))
    return "\n".join(f"- {o}: {round(100 * float(c) / total)}%"
                     for o, c in zip(options, counts, strict=True))


def examples_text(examples: Sequence[Example], attributes: Mapping[str, object]) -> str:
    """Write the examples as a persona's few-shot prompt text: per question, the answer shares of
    each group the persona is in (everyone's when it is in none).
    """
    blocks = []
    for example in examples:
        parts = [f"Question: {example.text}"]
        own = [g for g in example.groups if g.holds(attributes) and float(np.sum(g.counts)) > 0]
        for group in own:
            parts.append(f"People with {group.attribute} {group.group}:\n"
                         + _percent_lines(example.options, group.counts))
        if not own and float(np.sum(example.overall)) > 0:
            parts.append("Everyone:\n" + _percent_lines(example.options, example.overall))
        if len(parts) > 1:
            blocks.append("\n".join(parts))
    return "\n\n".join(blocks)


def examples_json(examples: Sequence[Example]) -> list[dict[str, object]]:
    """Return the examples as JSON-ready dicts (the profile's `examples` column)."""
    return [{"question_id": e.question_id, "text": e.text, "options": list(e.options),
             "overall": list(e.overall),
             "groups": [{"attribute": g.attribute, "group": g.group,
                         "conditions": [list(c) for c in g.conditions], "counts": list(g.counts)}
                        for g in e.groups]} for e in examples]


def examples_from_json(rows: Sequence[Mapping[str, Any]]) -> tuple[Example, ...]:
    """Read the examples back from their JSON form."""
    return tuple(Example(str(r["question_id"]), str(r["text"]), tuple(r["options"]), tuple(
        GroupAnswers(str(g["attribute"]), str(g["group"]),
                     tuple((str(k), str(v)) for k, v in g["conditions"]),
                     tuple(float(c) for c in g["counts"])) for g in r["groups"]),
        tuple(float(c) for c in r["overall"])) for r in rows)


def tempered(shares: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """Scale a distribution by the profile's temperature, p^(1/T) renormalised (zeros stay zero)."""
    return scaled(np.asarray(shares, float), temperature)


@dataclass(frozen=True)
class ProfileConfig:
    """One way of asking a persona: a method, its steering and (few-shot) its examples."""

    method: ElicitMethod
    steering: str
    examples: tuple[Example, ...] = ()
    index: int = 0  # which of a few-shot method's example sets (0: the first, or the only one)

    @property
    def label(self) -> str:
        """Return its row name ("distribution/persona", "few-shot:2#1/attributes")."""
        shots = f"#{self.index}" if self.examples else ""
        return f"{self.method.label}{shots}/{self.steering}"

    def respondent(self, text: str, attributes: Mapping[str, object], *,
                   persona_id: str | None = None, situation: str = "") -> Respondent:
        """Describe a persona to the method: its canonical demographics, the examples' text."""
        demographics = demographics_of(attributes)
        return Respondent(text, demographics, self.steering,
                          examples_text(self.examples, demographics), persona_id, situation)

    async def reading(self, question: str, options: Sequence[str], *, text: str,
                      attributes: Mapping[str, object], caller: StructuredCaller,
                      persona_id: str | None = None, situation: str = "",
                      purpose: str | None = None) -> Reading:
        """Ask the method for one persona's untempered answer distribution."""
        return await self.method.distribution_for(
            question, options, self.respondent(text, attributes, persona_id=persona_id,
                                               situation=situation), caller, purpose=purpose)


class _Tagged:
    """A caller whose calls carry one persona and step (the run's call log reads them)."""

    def __init__(self, inner: StructuredCaller, persona_id: str, step: int) -> None:
        self._inner, self._persona_id, self._step = inner, persona_id, step
        if hasattr(inner, "option_probabilities"):
            self.option_probabilities = self._option_probabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def structured(self, schema: Any, messages: list[Any], **kwargs: Any) -> Any:
        kwargs["persona_id"] = kwargs.get("persona_id") or self._persona_id
        kwargs["step"] = self._step
        return await self._inner.structured(schema, messages, **kwargs)

    async def _option_probabilities(self, messages: list[Any], labels: Sequence[str],
                                    **kwargs: object) -> object:
        kwargs["persona_id"] = kwargs.get("persona_id") or self._persona_id
        return await self._inner.option_probabilities(  # type: ignore[attr-defined]
            messages, labels, **kwargs)


def model_name(caller: StructuredCaller) -> str:
    """Return the served model's name a caller asks (a profile is refused on another)."""
    return str(getattr(caller, "cache_model", "") or caller.label)


@dataclass(frozen=True)
class SurveyProfile:
    """A fitted calibration's survey profile, answering for the society's agents."""

    job_id: str
    config: ProfileConfig
    temperature: float
    model: str
    llm: str | None = None

    @property
    def profile_id(self) -> str:
        """Return the calibration's id, which names the profile."""
        return self.job_id

    def describe(self) -> str:
        """Say what it is in one line ("logprobs, steering attributes, T=2.1, fitted on ...")."""
        shots = (f", {len(self.config.examples)} example question"
                 f"{'s' * (len(self.config.examples) != 1)}" if self.config.examples else "")
        return (f"{self.config.method.label}, steering {self.config.steering}, "
                f"T={self.temperature:.3g}{shots}, fitted on {self.model}")

    def check_model(self, caller: StructuredCaller, flag: str = "--survey-profile") -> None:
        """Refuse a caller of another model, in one line.

        Raises:
            UsageError: the caller serves another model than the profile was fitted on.
        """
        self.check_served(model_name(caller), flag)

    def check_served(self, served: str, flag: str = "--survey-profile") -> None:
        """Refuse another served model than the profile was fitted on, in one line.

        Raises:
            UsageError: the names differ.
        """
        if served != self.model:
            raise UsageError(f"{flag} {self.job_id}: the profile was fitted on {self.model}, and "
                             f"this run asks {served}; fit one on this model (personahub "
                             "calibrate --fit --llm ...) or run on that one")

    async def shares(self, question: str, options: Sequence[str], *, text: str,
                     attributes: Mapping[str, object], persona_id: str, situation: str,
                     step: int, caller: StructuredCaller
                     ) -> tuple[list[float] | None, StructuredResult[Any]]:
        """Return one agent's tempered answer distribution over the options, and the call.

        Args:
            question: the survey's question.
            options: its options, in order.
            text: the agent's persona text.
            attributes: its persona's attributes.
            persona_id: its persona id (the call log's).
            situation: what it saw and remembers, as prompt sections ('' for none).
            step: the run's step (the call log's).
            caller: the run's model client.

        Returns:
            The shares aligned with the options (None when the call gave none), and the call.
        """
        reading = await self.config.reading(
            question, options, text=text, attributes=attributes,
            caller=_Tagged(caller, persona_id, step),
            persona_id=persona_id, situation=situation, purpose=PROFILE_PURPOSE)
        if reading.shares is None:
            return None, reading.call
        vector = np.array([float(reading.shares.get(o, 0.0)) for o in options])
        if float(vector.sum()) <= 0:
            return None, reading.call
        return [float(v) for v in tempered(vector, self.temperature)], reading.call


def load_profile(con: duckdb.DuckDBPyConnection, job_id: str,
                 flag: str = "--survey-profile") -> SurveyProfile:
    """Read a calibration's survey profile.

    Raises:
        UsageError: no such calibration, or one without a profile (not fitted with --fit).
    """
    row = store.profile_row(con, job_id)
    if row is None:
        what = ("was not fitted (personahub calibrate --fit makes a profile)"
                if store.calibration_exists(con, job_id) else "is no calibration of this --db "
                "(personahub calibrations lists them)")
        raise UsageError(f"{flag} {job_id}: {what}")
    method = parse(str(row["method"]))
    params = {k: v for k, v in dict(row["params"]).items() if k in method.params()}
    if params:
        method = method.tuned(**params)
    config = ProfileConfig(method, str(row["steering"]), examples_from_json(row["examples"]))
    return SurveyProfile(job_id, config, float(row["temperature"]), str(row["model"]),
                         None if row.get("llm") is None else str(row["llm"]))

