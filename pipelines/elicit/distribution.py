"""Elicit a stated distribution: the model states a group's answer shares, one call per question x
group.

Stating a group's distribution came closer to OpinionQA groups than one sample per persona
(arXiv 2411.05403), at a fraction of the calls. The shares are a JSON object, option to
percentage, normalised afterwards; shares summing to 0 are no answer. The methods that show the
prompt more (distribution:panel, few-shot:K) are this method with their own text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from personahub.core.contracts import StructuredCaller
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    Reading,
    Respondent,
    respondent_group,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["DISTRIBUTION", "Distribution", "check_shares", "distribution_schema", "modal_answer",
           "shares_of", "stated_shares"]

DISTRIBUTION = "distribution"


def distribution_schema(options: Sequence[str]) -> type[BaseModel]:
    """Build the schema of a stated distribution: options as keys, percentages 0..100 (normalised
    afterwards).
    """
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {
        f"o{i}": (float, Field(ge=0, le=100, alias=option, description="percent of the group"))
        for i, option in enumerate(options)}
    model: type[BaseModel] = create_model(
        "StatedShares", __doc__="The group's answer shares, one per option.",
        __config__=ConfigDict(populate_by_name=True), **fields)
    return model


def shares_of(value: BaseModel) -> dict[str, float] | None:
    """Return a stated distribution's normalised shares (None: they sum to 0, no answer)."""
    raw = {str(k): float(v) for k, v in value.model_dump(by_alias=True).items()}
    total = sum(raw.values())
    if not np.isfinite(total) or total <= 0:
        return None
    return {k: v / total for k, v in raw.items()}


def check_shares(value: BaseModel) -> str | None:
    """Check a stated distribution for the seam: shares that sum to 0 are rejected."""
    return None if shares_of(value) is not None else "the shares sum to 0"


async def stated_shares(caller: StructuredCaller, question: str, options: Sequence[str], *,
                        group: str, purpose: str, shots: str = "", panel: str = "",
                        situation: str = "") -> Reading:
    """Ask for a group's answer shares to one question, optionally shown the group's answers to
    other questions (shots), some members' personas (panel) or a run's context (situation).
    """
    from personahub.pipelines.prompts.calibration import distribution_messages
    from personahub.tasks.survey import SURVEY_MAX_TOKENS

    messages = distribution_messages(question, options, group=group, shots=shots, panel=panel,
                                     situation=situation)
    limit = SURVEY_MAX_TOKENS + 16 * len(options)
    result = await caller.structured(distribution_schema(options), messages, purpose=purpose,
                                     check=check_shares, max_tokens=limit)
    return Reading(None if result.value is None else shares_of(result.value), result)


def modal_answer(ask: Ask, reading: Reading) -> Answer:
    """Store a distribution as an answer: its modal option, with the shares (JSON) as the reason."""
    shares = reading.shares
    if shares is None:
        return Answer(ask, None, None, reading.call)
    return Answer(ask, max(shares, key=lambda o: shares[o]), json.dumps(shares), reading.call)


@dataclass(frozen=True)
class Distribution(ElicitMethod):
    """Ask the model for each group's answer shares, once per question x group."""

    NAME = DISTRIBUTION
    SYNTAX = DISTRIBUTION
    HELP = "the model states each group's answer shares: one call per question x group"

    def shown(self, text: str) -> dict[str, str]:
        """Place the method's own prompt text (distribution_messages' shots or panel; none here)."""
        return {}

    def purpose(self) -> str:
        """Return its calls' purpose in the call log ("survey:calibrate-distribution")."""
        from personahub.pipelines.prompts.calibration import CALIBRATE_PURPOSE

        return f"{CALIBRATE_PURPOSE}-{self.label}"

    async def ask(self, ask: Ask, inputs: AskInputs, caller: StructuredCaller) -> Answer:
        """Ask for the respondent group's shares: the modal option, the shares as the reason."""
        text, options = inputs.questions[ask.question_id]
        own = inputs.texts.get(self.label, {}).get(ask.respondent, "")
        reading = await stated_shares(caller, text, options,
                                      group=inputs.groups.get(ask.respondent, ask.respondent),
                                      purpose=self.purpose(), **self.shown(own))
        return modal_answer(ask, reading)

    async def distribution_for(self, question: str, options: Sequence[str],
                               respondent: Respondent, caller: StructuredCaller, *,
                               purpose: str | None = None) -> Reading:
        """Ask for the shares of people like the persona (its context as the method's own text)."""
        return await stated_shares(caller, question, options, group=respondent_group(respondent),
                                   purpose=purpose or self.purpose(),
                                   situation=respondent.situation,
                                   **self.shown(respondent.context))
