"""Elicit option probabilities: the option letters' token probabilities, one call per question x
group, scaled by a temperature fitted on held-out questions.

Token probabilities are known to be badly calibrated (arXiv 2411.05403 found raw ones worse than
uniform), so the row is scaled by one temperature fitted on a quarter of the questions (at least
MIN_FIT_QUESTIONS), asked but not scored. A fit may set the temperature instead; then nothing is
held out.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from personahub.core.contracts import StructuredCaller
from personahub.core.errors import UsageError
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    GroupCounts,
    Reading,
    Respondent,
    Stored,
    Tunable,
    respondent_group,
)
from personahub.pipelines.elicit.temperature import LOG_T_BOUNDS, scaled, temperature_scaled

__all__ = ["LETTERS", "LOGPROBS", "Logprobs", "MIN_FIT_QUESTIONS"]

LOGPROBS = "logprobs"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# the temperature is fitted on a quarter of the questions, and on no fewer than this: a fit to one
# question's few groups is a fit to that question (SmolLM2's, on one, stopped at its bound)
MIN_FIT_QUESTIONS = 3


async def _letters(caller: StructuredCaller, question: str, options: Sequence[str], *,
                   group: str, purpose: str | None, situation: str = "") -> Reading:
    """Ask a group member for their option's letter; the letters' probabilities are the shares.

    Raises:
        UsageError: the client cannot read token log-probabilities, or too many options.
    """
    from personahub.pipelines.prompts.calibration import CALIBRATE_PURPOSE, logprobs_messages

    letters = LETTERS[:len(options)]
    ask_probabilities = getattr(caller, "option_probabilities", None)
    if ask_probabilities is None or len(options) > len(LETTERS):
        raise UsageError(f"--elicit {LOGPROBS}: this model client cannot read token "
                         "log-probabilities (not with --provider-batch or a remote executor; at "
                         f"most {len(LETTERS)} options)")
    messages = logprobs_messages(question, options, letters=letters, group=group,
                                 situation=situation)
    result = await ask_probabilities(messages, letters,
                                     purpose=purpose or f"{CALIBRATE_PURPOSE}-{LOGPROBS}")
    if result.value is None:
        return Reading(None, result)
    return Reading({o: float(result.value.probabilities.get(letter, 0.0))
                    for letter, o in zip(letters, options, strict=True)}, result)


@dataclass(frozen=True)
class Logprobs(ElicitMethod):
    """Read each group's option probabilities from the answer letter's token log-probabilities."""

    temperature: float | None = None  # None: fitted on the job's held-out questions

    NAME = LOGPROBS
    SYNTAX = LOGPROBS
    HELP = ("the option letters' token probabilities, one call per question x group; "
            "temperature fitted on held-out questions")
    asks_held_out = True
    probes = True
    held_out_note = " (its held-out questions fit its temperature)"
    tunables = (Tunable("temperature", math.exp(LOG_T_BOUNDS[0]), math.exp(LOG_T_BOUNDS[1]),
                        whole=False, doc="the probabilities are scaled p^(1/T)", optional=True),)

    def held_out(self, questions: Sequence[str], seed: int) -> tuple[str, ...]:
        """Return the questions its temperature is fitted on: a quarter, at least
        MIN_FIT_QUESTIONS, drawn seeded (none when the temperature is set).

        Raises:
            UsageError: too few questions to fit the temperature and score one more.
        """
        if self.temperature is not None:
            return ()
        if len(questions) <= MIN_FIT_QUESTIONS:
            raise UsageError(f"--elicit {LOGPROBS}: the calibration asks {len(questions)} "
                             f"question{'s' * (len(questions) != 1)}; its temperature is fitted "
                             f"on {MIN_FIT_QUESTIONS} held-out questions and one more is needed "
                             f"to score ({MIN_FIT_QUESTIONS + 1} in all)")
        k = max(MIN_FIT_QUESTIONS, len(questions) // 4)
        return tuple(random.Random(f"{seed}:{self.label}").sample(sorted(questions), k))

    async def ask(self, ask: Ask, inputs: AskInputs, caller: StructuredCaller) -> Answer:
        """Ask the group: the modal option, with the letters' raw probabilities (JSON) as the reason.
        """
        text, options = inputs.questions[ask.question_id]
        reading = await _letters(caller, text, options,
                                 group=inputs.groups.get(ask.respondent, ask.respondent),
                                 purpose=None)
        shares = reading.shares
        if shares is None:
            return Answer(ask, None, None, reading.call)
        return Answer(ask, max(shares, key=lambda o: shares[o]), json.dumps(shares), reading.call)

    def _scaled(self, stored: Stored) -> tuple[GroupCounts, float]:
        raw = stored.stated.get(self.label, {})
        if self.temperature is not None:
            return {key: scaled(v, self.temperature) for key, v in raw.items()}, self.temperature
        return temperature_scaled(stored.survey, raw, self.held_out(stored.questions, stored.seed))

    def distributions(self, stored: Stored) -> dict[str, GroupCounts]:
        """Return the probabilities scaled by the temperature, held-out questions left out."""
        return {self.label: self._scaled(stored)[0]}

    def fitted(self, stored: Stored) -> dict[str, float]:
        """Return the temperature the row is scaled by."""
        return {"temperature": self._scaled(stored)[1]}

    async def distribution_for(self, question: str, options: Sequence[str],
                               respondent: Respondent, caller: StructuredCaller, *,
                               purpose: str | None = None) -> Reading:
        """Read the letters' probabilities for people like the persona, scaled by the temperature
        when one is set.
        """
        reading = await _letters(caller, question, options, group=respondent_group(respondent),
                                 purpose=purpose, situation=respondent.situation)
        if reading.shares is None or self.temperature is None:
            return reading
        vector = scaled([reading.shares[o] for o in options], self.temperature)
        return Reading({o: float(v) for o, v in zip(options, vector, strict=True)}, reading.call)
