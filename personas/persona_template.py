"""Persona text written offline from a person's attributes, by a fixed template.

Stored with text_origin "template", so nothing downstream takes it for a written description.
"""

from __future__ import annotations

from collections.abc import Mapping

from personahub.personas.demographics import KEYS, label

__all__ = ["TEXT_ORIGIN", "template_text"]

TEXT_ORIGIN = "template"
_NOUNS = {"female": ("woman", "girl", "She", "she", "has", "is"),
          "male": ("man", "boy", "He", "he", "has", "is")}
_NEUTRAL = ("person", "young person", "They", "they", "have", "are")
_RACE = {"white": "White", "black": "Black", "asian": "Asian", "hispanic": "Hispanic"}
_PARTY = {"republican": "a Republican", "democrat": "a Democrat", "independent": "an independent",
          "other": "a supporter of another party"}
# keys the template never repeats among the free attributes
_BOOKKEEPING = {"population", "text_origin", "persona"}


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _who(attrs: Mapping[str, str]) -> str:
    """Write the first sentence ("A woman." alone would be too short for the quality gate)."""
    noun, young, *_ = _NOUNS.get(attrs.get("sex", ""), _NEUTRAL)
    age = attrs.get("age_group")
    head = young if age == "0-17" else noun
    race = _RACE.get(attrs.get("race_ethnicity", ""))
    if not (attrs.get("sex") or age or attrs.get("race_ethnicity") or attrs.get("region")):
        return "A survey panelist."
    phrase = "A survey panelist: " + _article(f"{race} {head}" if race else head)
    if age:
        phrase += f" aged {label('age_group', age)}"
    if attrs.get("race_ethnicity") == "other":
        phrase += " who identifies with another race or ethnicity"
    if attrs.get("region"):
        phrase += f", living in {label('region', attrs['region'])} of the United States"
    return phrase + "."


def _life(attrs: Mapping[str, str], subject: str, has: str, is_: str) -> list[str]:
    owned = []
    if attrs.get("education"):
        owned.append(label("education", attrs["education"]))
    if attrs.get("income"):
        owned.append(f"a household income of {label('income', attrs['income'])} a year")
    sentences = [f"{subject} {has} {' and '.join(owned)}."] if owned else []
    if attrs.get("marital_status"):
        sentences.append(f"{subject} {is_} {label('marital_status', attrs['marital_status'])}.")
    return sentences


def _politics(attrs: Mapping[str, str], pronoun: str, is_: str) -> str | None:
    party, ideology = attrs.get("party"), attrs.get("ideology")
    if not party and not ideology:
        return None
    views = f"{label('ideology', ideology)} views" if ideology else ""
    if party:
        return (f"Politically, {pronoun} {is_} {_PARTY.get(party, label('party', party))}"
                + (f" with {views}" if views else "") + ".")
    return f"Politically, {pronoun} {'holds' if is_ == 'is' else 'hold'} {views}."


def template_text(attributes: Mapping[str, object]) -> str:
    """Return the template persona text for the attributes."""
    attrs = {k: str(v) for k, v in attributes.items() if v not in (None, "")}
    *_, subject, pronoun, has, is_ = _NOUNS.get(attrs.get("sex", ""), _NEUTRAL)
    sentences = [_who(attrs), *_life(attrs, subject, has, is_)]
    politics = _politics(attrs, pronoun, is_)
    if politics:
        sentences.append(politics)
    others = [f"{k.replace('_', ' ')}: {v}" for k, v in sorted(attrs.items())
              if k not in KEYS and k not in _BOOKKEEPING]
    if others:
        sentences.append("Other details: " + "; ".join(others) + ".")
    return " ".join(sentences)
