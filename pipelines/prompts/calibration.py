"""The calibration prompt: one person (or nobody) and one survey question, answered as one option.

The steering says how much of the person is shown: the persona text, the attributes, both, or
none. With none, each ask names a respondent number, so N asks are N samples rather than one
cached answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from personahub.core.sections import section
from personahub.pipelines.prompts.population import attribute_lines

STEERINGS = ("persona", "attributes", "attributes+persona")
NO_PERSONA = "none"
CALIBRATE_PURPOSE = "survey:calibrate"  # the survey output limit (SURVEY_MAX_TOKENS)

CALIBRATE_SYSTEM = ("You are the person described under Persona, answering a public opinion "
                    "survey honestly, as that person would. Answer only with JSON that matches "
                    "the schema.")
NO_PERSONA_SYSTEM = ("You are answering a public opinion survey honestly. Answer only with JSON "
                     "that matches the schema.")
CALIBRATE_TASK = ("Choose the one option that is your answer to the question, written exactly "
                  "as it is listed.")


def person_section(steering: str, text: str, attributes: Mapping[str, object]) -> str:
    """Return the prompt's section about the person, as the steering asks."""
    if steering == "persona":
        return section("Persona", text)
    lines = attribute_lines(attributes) or "- (no demographics known)"
    if steering == "attributes":
        return section("Persona", lines)
    if steering == "attributes+persona":
        return section("Persona", f"{text}\n\n{lines}")
    raise ValueError(f"steering {steering!r}: use one of {', '.join(STEERINGS)}")


def calibration_messages(question: str, options: Sequence[str], *, steering: str,
                         text: str = "", attributes: Mapping[str, object] | None = None,
                         respondent: int = 0, situation: str = "") -> list[BaseMessage]:
    """Return the messages asking one person one question (with steering "none", a numbered respondent);
    situation is a run's context sections (world, events, memory), shown after the person.
    """
    listed = "\n".join(f"- {option}" for option in options)
    tail = (section("Question", question) + "\n" + section("Options", listed) + "\n"
            + section("Task", CALIBRATE_TASK))
    if steering == NO_PERSONA:
        head = section("Respondent", f"Survey respondent number {respondent + 1}.")
        return [SystemMessage(NO_PERSONA_SYSTEM), HumanMessage(head + "\n" + tail)]
    head = person_section(steering, text, attributes or {}) + _situated(situation)
    return [SystemMessage(CALIBRATE_SYSTEM), HumanMessage(head + "\n" + tail)]


def _situated(situation: str) -> str:
    """Return a run's context sections after a blank line, or nothing (a calibration's prompt)."""
    return f"\n{situation.strip()}\n" if situation.strip() else ""


# elicitation methods other than one answer per persona (pipelines/elicit/)
DISTRIBUTION_SYSTEM = ("You are a survey researcher who knows how groups of people answer "
                       "public opinion surveys. Answer only with JSON that matches the schema.")
DISTRIBUTION_TASK = ("For each option (its key written exactly as it is listed), give the "
                     "percentage of this group (0 to 100) who chose it; the percentages sum "
                     "to 100.")


def distribution_messages(question: str, options: Sequence[str], *, group: str,
                          shots: str = "", panel: str = "", situation: str = "") -> list[BaseMessage]:
    """Return the messages asking for a group's answer shares to one question, optionally with the group's
    answers to other questions (shots), some members' personas (panel) or a run's context
    sections (situation).
    """
    listed = "\n".join(f"- {option}" for option in options)
    body = section("Group", group) + _situated(situation) + "\n"
    if panel:
        body += section("Some people in this group", panel) + "\n"
    if shots:
        body += section("How this group answered other questions of the survey", shots) + "\n"
    body += (section("Question", question) + "\n" + section("Options", listed) + "\n"
             + section("Task", DISTRIBUTION_TASK))
    return [SystemMessage(DISTRIBUTION_SYSTEM), HumanMessage(body)]


LOGPROBS_SYSTEM = ("You are a member of the group described under Group, answering a public "
                   "opinion survey honestly, as a typical member of that group would.")
LOGPROBS_TASK = "Answer with the letter of your option only."


def logprobs_messages(question: str, options: Sequence[str], *, group: str,
                      letters: Sequence[str], situation: str = "") -> list[BaseMessage]:
    """Return the messages asking a group member for their answer's letter (a run's context sections as
    situation); the letters' token probabilities are the answer.
    """
    listed = "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options,
                                                                      strict=True))
    body = (section("Group", group) + _situated(situation) + "\n" + section("Question", question)
            + "\n"
            + section("Options", listed) + "\n" + section("Task", LOGPROBS_TASK))
    return [SystemMessage(LOGPROBS_SYSTEM), HumanMessage(body)]
