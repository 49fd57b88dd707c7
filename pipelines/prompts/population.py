"""Attribute-to-persona: the one structured call that writes a person from their attributes.
The prompt lists the attributes by label and asks for detail that does not change them.
"""

from __future__ import annotations

from collections.abc import Mapping

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personahub.core.sections import section
from personahub.personas.demographics import KEYS, label

WRITE_PERSONA_PURPOSE = "write_persona"
WRITE_PERSONA_MAX_TOKENS = 240  # two or three sentences about one person (the prompt below)
WRITTEN_MAX_CHARS = 450  # two or three sentences; under the quality gate's 600

WRITE_PERSONA_SYSTEM = (
    "You write persona descriptions of survey respondents for a simulation. A persona is two "
    "or three sentences about one specific person: who they are, their work or daily life, "
    "their circumstances. Answer only with JSON that matches the requested schema."
)
WRITE_PERSONA_TASK = (
    "Write the persona of the person above. Keep to every attribute: do not give a different "
    "age, sex, race or ethnicity, region, education, income, party or ideology, and do not "
    "list the attributes back; make them part of a believable person (an occupation, a place, "
    "a habit or concern). Write in the third person."
)
_NAMES = {"age_group": "Age", "sex": "Sex", "race_ethnicity": "Race or ethnicity",
          "region": "Region (United States)", "education": "Education",
          "income": "Household income", "party": "Party", "ideology": "Political ideology",
          "marital_status": "Marital status"}
_BOOKKEEPING = {"population", "text_origin", "persona"}


class WrittenPersona(BaseModel):
    """One person written from their attributes."""

    persona: str = Field(min_length=40, max_length=WRITTEN_MAX_CHARS,
                         description="two or three sentences describing this person")


def attribute_lines(attributes: Mapping[str, object]) -> str:
    """Return the attributes as "- Name: label" lines, the canonical keys first, any others after."""
    lines = [f"- {_NAMES[key]}: {label(key, str(attributes[key]))}"
             for key in KEYS if attributes.get(key) not in (None, "")]
    lines += [f"- {key.replace('_', ' ').capitalize()}: {value}"
              for key, value in sorted(attributes.items())
              if key not in KEYS and key not in _BOOKKEEPING and value not in (None, "")]
    return "\n".join(lines)


def write_persona_messages(attributes: Mapping[str, object]) -> list[BaseMessage]:
    """Return the attribute-to-persona prompt for one person."""
    body = section("Person", attribute_lines(attributes)) + "\n" + section("Task", WRITE_PERSONA_TASK)
    return [SystemMessage(WRITE_PERSONA_SYSTEM), HumanMessage(body)]
