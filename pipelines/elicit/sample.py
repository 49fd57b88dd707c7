"""Elicit by sampling: each panel persona answers once, and a group's distribution is its panel's
counts; with no persona (the no_persona baseline) each ask names a respondent number.

The prompts are imported when a call is made, so the CLI's help reads this module without
loading them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    GroupCounts,
    QuestionPlan,
    Reading,
    Respondent,
    Stored,
)

__all__ = ["SAMPLE", "Sample"]

SAMPLE = "sample"


def _respondent_number(respondent: str) -> int:
    return int(respondent.removeprefix("#"))


async def _choice(caller: StructuredCaller, question: str, options: Sequence[str], *,
                  steering: str, text: str = "", attributes: Mapping[str, str] | None = None,
                  respondent: int = 0, persona_id: str | None = None,
                  purpose: str | None = None, situation: str = "") -> StructuredResult[Any]:
    """Ask one person (or a numbered respondent, steering "none") for one option."""
    from personahub.pipelines.prompts.calibration import CALIBRATE_PURPOSE, calibration_messages
    from personahub.tasks.survey import SURVEY_MAX_TOKENS, survey_schema

    messages = calibration_messages(question, options, steering=steering, text=text,
                                    attributes=attributes, respondent=respondent,
                                    situation=situation)
    return await caller.structured(survey_schema("choice", tuple(options)), messages,
                                   purpose=purpose or CALIBRATE_PURPOSE, persona_id=persona_id,
                                   max_tokens=SURVEY_MAX_TOKENS)


@dataclass(frozen=True)
class Sample(ElicitMethod):
    """Ask each panel persona once per question and steering; count the panel's answers."""

    NAME = SAMPLE
    SYNTAX = SAMPLE
    HELP = "each persona answers once; default"
    sampled = True
    from_panel = True

    def rows(self, steerings: Sequence[str]) -> tuple[str, ...]:
        """Return one row per steering: the persona text, its attributes, or both."""
        return tuple(steerings)

    def asks(self, plan: QuestionPlan, held_out: Collection[str]) -> list[Ask]:
        """Plan one ask per steering and panel persona of the question's groups."""
        return [Ask(plan.question_id, steering, pid, pid) for steering in plan.steerings
                for pid in plan.people]

    def ask_count(self, plan: QuestionPlan, held_out: Collection[str]) -> int:
        """Count one ask per steering and panel persona."""
        return len(plan.steerings) * len(plan.people)

    async def ask(self, ask: Ask, inputs: AskInputs, caller: StructuredCaller) -> Answer:
        """Ask the persona (or, for the no-persona baseline, a numbered respondent)."""
        from personahub.pipelines.prompts.calibration import NO_PERSONA

        text, options = inputs.questions[ask.question_id]
        if ask.persona_id is None:
            result = await _choice(caller, text, options, steering=NO_PERSONA,
                                   respondent=_respondent_number(ask.respondent))
        else:
            persona, attributes = inputs.personas[ask.persona_id]
            result = await _choice(caller, text, options, steering=ask.method, text=persona,
                                   attributes=attributes, persona_id=ask.persona_id)
        if result.value is None:
            return Answer(ask, None, None, result)
        value = result.value.model_dump()
        return Answer(ask, str(value["answer"]), str(value.get("reason") or "") or None, result)

    def distributions(self, stored: Stored) -> dict[str, GroupCounts]:
        """Return each steering's panel counts."""
        return {steering: dict(counts) for steering, counts in stored.counted.items()}

    async def distribution_for(self, question: str, options: Sequence[str],
                               respondent: Respondent, caller: StructuredCaller, *,
                               purpose: str | None = None) -> Reading:
        """Ask the persona once: all the share on the option it chose."""
        result = await _choice(caller, question, options, steering=respondent.steering,
                               text=respondent.text, attributes=respondent.attributes,
                               persona_id=respondent.persona_id, purpose=purpose,
                               situation=respondent.situation)
        if result.value is None:
            return Reading(None, result)
        chosen = str(result.value.model_dump()["answer"])
        return Reading({o: float(o == chosen) for o in options}, result)
