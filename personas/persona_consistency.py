"""Does a written persona contradict the attributes it was written from?

A model asked for a woman aged 30-49 in the South may write a 62-year-old man from Ohio. Only what
the text states about the person itself is read; income is not checked, being too loosely phrased.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from personahub.personas.demographic_columns import STATE_NAMES, region_of_state
from personahub.personas.demographics import age_group_of, label

__all__ = ["check_persona_text"]

_RELATIVES = (r"son|daughter|child|children|kid|kids|boy|girl|grandson|granddaughter|grandchild|"
              r"baby|toddler|twins|niece|nephew|brother|sister|sibling|dog|cat|puppy|business|"
              r"company|car|house")
_AGE = re.compile(r"(?P<before>\b(?:her|his|their|my|whose|of|a|an|the)\s+)?"
                  r"\b(?P<n>\d{1,3})[- ]years?[- ]old\b(?:\s+(?P<after>[a-z]+))?"
                  r"|\baged?\s+(?P<n2>\d{1,3})\b"
                  r"|\bin\s+(?:her|his|their)\s+(?:early\s+|mid\s+|mid-|late\s+)?(?P<decade>\d0)'?s\b",
                  re.IGNORECASE)
_FEMALE_NOUNS = {"woman", "girl", "mother", "wife", "grandmother", "mom", "widow", "lady",
                 "businesswoman", "actress", "waitress", "daughter", "sister", "aunt", "matriarch"}
_MALE_NOUNS = {"man", "boy", "father", "husband", "grandfather", "dad", "widower", "gentleman",
               "businessman", "actor", "waiter", "son", "brother", "uncle", "patriarch"}
_WORD = re.compile(r"[A-Za-z']+")
_FEMALE_PRONOUNS = {"she", "her", "hers", "herself"}
_MALE_PRONOUNS = {"he", "him", "his", "himself"}
_PARTY = re.compile(r"\b(?:a|an)\s+(?:[a-z-]+\s+){0,2}?(?P<p>Republican|Democrat)\b"
                    r"|\bvot(?:es|ed|ing)\s+(?P<v>Republican|Democratic|Democrat)\b")
_SIDES = {"conservative": re.compile(r"\bconservative\b", re.I),
          "liberal": re.compile(r"\b(?:liberal|progressive|left-leaning)\b", re.I)}
_STRONG = re.compile(r"\b(?:very|staunch(?:ly)?|strongly|deeply|fiercely)\s+(?:conservative|liberal|"
                     r"progressive)\b", re.I)
_EDUCATION_ORDER = ("less_than_high_school", "high_school", "some_college", "associates",
                    "bachelors", "postgraduate")
_EDUCATION_CLAIMS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\b(?:Ph\.?\s?D|doctorate|doctoral degree|master'?s degree|MBA|law degree|"
                r"medical degree)\b", re.I), "postgraduate", "postgraduate"),
    (re.compile(r"\b(?:bachelor'?s degree|college degree|college graduate|graduated from college|"
                r"university degree)\b", re.I), "bachelors", "postgraduate"),
    (re.compile(r"\bassociate'?s degree\b", re.I), "associates", "postgraduate"),
    (re.compile(r"\b(?:dropped out of high school|never finished high school|"
                r"(?:did not|didn't) finish high school|no high school diploma)\b", re.I),
     "less_than_high_school", "less_than_high_school"),
    (re.compile(r"\b(?:never went to college|(?:did not|didn't) go to college|no college degree|"
                r"never attended college)\b", re.I), "less_than_high_school", "high_school"),
)
_STATES = "|".join(sorted(STATE_NAMES, key=len, reverse=True))
_LIVES = re.compile(r"\b(?:lives?|living|based|resides?|residing|settled|home)\s+(?:is\s+)?in\s+"
                    r"(?:(?:[A-Z][\w.'-]*\s+){0,3}[A-Z][\w.'-]*,\s*)?"
                    rf"(?P<state>{_STATES}|[A-Z]{{2}})\b")
_RACE_WORDS = {"white": "white", "black": "black", "african american": "black", "asian": "asian",
               "asian american": "asian", "hispanic": "hispanic", "latina": "hispanic",
               "latino": "hispanic"}
_RACE_LEAD = re.compile(r"^\W*(?:[Aa]n?)\s+(?:[\w-]+[\s,]+){0,3}?"
                        r"(?P<race>African American|Asian American|White|Black|Asian|Hispanic|"
                        r"Latina|Latino)\s+(?:[\w-]+\s+){0,2}?(?:woman|man|person|girl|boy|mother|"
                        r"father|[a-z]+er|[a-z]+ist|[a-z]+an)\b")


def _first_age(text: str) -> tuple[str, set[str]] | None:
    """Return the first age the text gives the person, and the age groups it allows."""
    for match in _AGE.finditer(text):
        if match.group("n"):
            before = (match.group("before") or "").strip().lower()
            after = (match.group("after") or "").lower()
            if before in {"her", "his", "their", "my", "whose", "of"} or re.fullmatch(_RELATIVES, after):
                continue  # someone else's age
            years = int(match.group("n"))
            return f"{years} years old", {age_group_of(years)} if years <= 130 else set()
        if match.group("n2"):
            years = int(match.group("n2"))
            return f"aged {years}", {age_group_of(years)} if years <= 130 else set()
        decade = int(match.group("decade"))
        return (f"in their {decade}s",
                {age_group_of(decade), age_group_of(min(decade + 9, 130))})
    return None


def _age(text: str, attrs: Mapping[str, str]) -> str | None:
    group = attrs.get("age_group")
    found = _first_age(text) if group else None
    if found and found[1] and group not in found[1]:
        return f"the text says {found[0]}, but age_group is {group}"
    return None


def _sex(text: str, attrs: Mapping[str, str]) -> str | None:
    sex = attrs.get("sex")
    if sex not in ("female", "male"):
        return None
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    head = re.split(r"\b(?:who|whose|with|that|and)\b", first, maxsplit=1)[0]
    for word in _WORD.findall(head.lower()):
        said = "female" if word in _FEMALE_NOUNS else "male" if word in _MALE_NOUNS else None
        if said is not None:
            if said != sex:
                return f"the text calls the person a {word}, but sex is {sex}"
            break
    words = [w.lower() for w in _WORD.findall(text)]
    female = sum(w in _FEMALE_PRONOUNS for w in words)
    male = sum(w in _MALE_PRONOUNS for w in words)
    own, other = (female, male) if sex == "female" else (male, female)
    if other >= 2 and other > own:
        return f"the text mostly says {'he/him' if sex == 'female' else 'she/her'}, but sex is {sex}"
    return None


def _party(text: str, attrs: Mapping[str, str]) -> str | None:
    party = attrs.get("party")
    if not party:
        return None
    for match in _PARTY.finditer(text):
        said = (match.group("p") or match.group("v") or "").lower()
        said = "democrat" if said.startswith("democrat") else said
        if said != party:
            return f"the text calls the person {label('party', said)}, but party is {party}"
    return None


def _ideology(text: str, attrs: Mapping[str, str]) -> str | None:
    ideology = attrs.get("ideology")
    if not ideology:
        return None
    named = {side for side, pattern in _SIDES.items() if pattern.search(text)}
    if ideology == "moderate":
        strong = _STRONG.search(text)
        return f"the text says {strong.group(0)!r}, but ideology is moderate" if strong else None
    own = "conservative" if "conservative" in ideology else "liberal"
    other = "liberal" if own == "conservative" else "conservative"
    if other in named and own not in named:
        return f"the text calls the person {other}, but ideology is {ideology}"
    return None


def _education(text: str, attrs: Mapping[str, str]) -> str | None:
    education = attrs.get("education")
    if education not in _EDUCATION_ORDER:
        return None
    rank = _EDUCATION_ORDER.index(education)
    for pattern, low, high in _EDUCATION_CLAIMS:
        match = pattern.search(text)
        if match and not _EDUCATION_ORDER.index(low) <= rank <= _EDUCATION_ORDER.index(high):
            return f"the text says {match.group(0)!r}, but education is {education}"
    return None


def _region(text: str, attrs: Mapping[str, str]) -> str | None:
    region = attrs.get("region")
    match = _LIVES.search(text) if region else None
    said = region_of_state(match.group("state")) if match else None
    if said and said != region:
        return f"the text says the person lives in {match.group('state')}, but region is {region}"  # type: ignore[union-attr]
    return None


def _race(text: str, attrs: Mapping[str, str]) -> str | None:
    race = attrs.get("race_ethnicity")
    match = _RACE_LEAD.search(text) if race else None
    said = _RACE_WORDS.get(match.group("race").lower()) if match else None
    if said and said != race:
        return f"the text calls the person {match.group('race')}, but race_ethnicity is {race}"  # type: ignore[union-attr]
    return None


_CHECKS = (_age, _sex, _party, _ideology, _education, _region, _race)


def check_persona_text(text: str, attributes: Mapping[str, object]) -> list[str]:
    """Return every contradiction between the text and the canonical attributes."""
    attrs = {k: str(v) for k, v in attributes.items() if v not in (None, "")}
    return [problem for check in _CHECKS if (problem := check(text, attrs)) is not None]
