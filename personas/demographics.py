"""The demographic column set: canonical keys, their vocabularies, and other sources' names for them.

Calibration matches personas to survey groups, which only works if imports, drawn populations and
surveys spell values alike. Values are short slugs with a label for prompts and synonyms
(OpinionQA's and Nemotron's spellings); docs/personas.md has the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "KEYS",
    "OPINIONQA_ATTRIBUTES",
    "VOCABULARY",
    "Value",
    "age_group_of",
    "attribute_keys",
    "canonical",
    "canonical_key",
    "group_conditions",
    "label",
    "values_of",
]


@dataclass(frozen=True)
class Value:
    """One value of a canonical key: its slug, a label for text, and other spellings of it."""

    slug: str
    label: str
    synonyms: tuple[str, ...] = ()


def _values(*items: tuple[str, str, tuple[str, ...]]) -> tuple[Value, ...]:
    return tuple(Value(slug, text, synonyms) for slug, text, synonyms in items)


# order matters: the order of groups in tables and of ordinal keys (low to high)
VOCABULARY: dict[str, tuple[Value, ...]] = {
    "age_group": _values(
        ("0-17", "under 18", ("under 18", "under_18")),
        ("18-29", "18 to 29", ("18 to 29",)),
        ("30-49", "30 to 49", ("30 to 49",)),
        ("50-64", "50 to 64", ("50 to 64",)),
        ("65+", "65 or older", ("65 or older", "65 and older", "65 and over", "65 plus")),
    ),
    "sex": _values(
        ("female", "female", ("f", "woman", "women")),
        ("male", "male", ("m", "man", "men")),
    ),
    "race_ethnicity": _values(
        ("white", "White", ("white american", "caucasian")),
        ("black", "Black", ("black or african american", "african american")),
        ("asian", "Asian", ("asian american",)),
        ("hispanic", "Hispanic", ("latino", "latina", "latinx", "hispanic or latino")),
        ("other", "another race or ethnicity", ("other race",)),
    ),
    "region": _values(
        ("northeast", "the Northeast", ("north east",)),
        ("midwest", "the Midwest", ("mid west", "north central")),
        ("south", "the South", ()),
        ("west", "the West", ()),
    ),
    "education": _values(
        ("less_than_high_school", "less than a high school education",
         ("less than high school", "less_than_9th", "9th_12th_no_diploma", "no high school diploma")),
        ("high_school", "a high school diploma",
         ("high school graduate", "high school diploma", "high school", "ged")),
        ("some_college", "some college but no degree",
         ("some college, no degree", "some college", "some college no degree")),
        ("associates", "an associate's degree", ("associate's degree", "associate degree")),
        ("bachelors", "a bachelor's degree",
         ("college graduate/some postgrad", "bachelor's degree", "college graduate", "bachelor")),
        ("postgraduate", "a postgraduate degree",
         ("graduate", "graduate degree", "postgrad", "master's degree", "doctorate")),
    ),
    "income": _values(
        ("under_30k", "under $30,000", ("less than $30,000", "<30k", "lt_30k")),
        ("30k_50k", "$30,000 to $50,000", ("$30,000-$50,000", "$30,000 to $50,000")),
        ("50k_75k", "$50,000 to $75,000", ("$50,000-$75,000", "$50,000 to $75,000")),
        ("75k_100k", "$75,000 to $100,000", ("$75,000-$100,000", "$75,000 to $100,000")),
        ("100k_plus", "$100,000 or more", ("$100,000 or more", "100k+")),
    ),
    "party": _values(
        ("republican", "Republican", ("gop", "rep")),
        ("democrat", "Democrat", ("democratic", "dem")),
        ("independent", "independent", ("ind",)),
        ("other", "another party", ("other party", "something else")),
    ),
    "ideology": _values(
        ("very_conservative", "very conservative", ()),
        ("conservative", "conservative", ()),
        ("moderate", "moderate", ("middle of the road",)),
        ("liberal", "liberal", ()),
        ("very_liberal", "very liberal", ()),
    ),
    "marital_status": _values(
        ("married", "married", ("married_present", "married present", "now married")),
        ("never_married", "never married", ("never been married", "single, never married")),
        ("divorced", "divorced", ()),
        ("separated", "separated", ()),
        ("widowed", "widowed", ()),
    ),
}
KEYS: tuple[str, ...] = tuple(VOCABULARY)

# OpinionQA's attribute names; groups outside metadata.csv ("Refused") map to nothing,
# as OpinionQA leaves them out of its scores.
OPINIONQA_ATTRIBUTES: dict[str, str] = {
    "AGE": "age_group",
    "SEX": "sex",
    "RACE": "race_ethnicity",
    "CREGION": "region",
    "EDUCATION": "education",
    "INCOME": "income",
    "POLPARTY": "party",
    "POLIDEOLOGY": "ideology",
    "MARITAL": "marital_status",
}

_SPACES = re.compile(r"\s+")


def _fold(text: str) -> str:
    """Fold a spelling for comparison: case-folded, underscores as spaces, one space, plain quotes."""
    text = str(text).replace("’", "'").replace("_", " ")
    return _SPACES.sub(" ", text).strip().casefold()


_LOOKUP: dict[str, dict[str, str]] = {
    key: {_fold(spelling): value.slug
          for value in values for spelling in (value.slug, value.label, *value.synonyms)}
    for key, values in VOCABULARY.items()
}
_LABELS: dict[str, dict[str, str]] = {
    key: {value.slug: value.label for value in values} for key, values in VOCABULARY.items()
}


def values_of(key: str) -> tuple[str, ...]:
    """Return the slugs of a key, in vocabulary order."""
    return tuple(value.slug for value in VOCABULARY[key])


def canonical(key: str, raw: object) -> str | None:
    """Return the slug raw spells for key ("Female" -> "female"), or None."""
    if raw is None:
        return None
    return _LOOKUP[key].get(_fold(str(raw)))


def label(key: str, slug: str) -> str:
    """Return a slug's label ("bachelors" -> "a bachelor's degree"); other values as they are."""
    return _LABELS.get(key, {}).get(slug, slug)


def canonical_key(name: str) -> str | None:
    """Return the canonical key a name stands for: the key itself or an OpinionQA attribute name."""
    folded = name.strip()
    if folded.lower() in VOCABULARY:
        return folded.lower()
    return OPINIONQA_ATTRIBUTES.get(folded.upper())


def attribute_keys(attribute: str) -> tuple[str, ...] | None:
    """Return the canonical keys a survey attribute crosses, or None when a part is not a known
    demographic.
    """
    single = canonical_key(attribute)
    if single is not None:
        return (single,)
    for separator in ("+", "_"):
        parts = [p for p in attribute.split(separator) if p.strip()]
        if len(parts) > 1:
            keys = [canonical_key(p) for p in parts]
            if all(keys):
                return tuple(k for k in keys if k)
    return None


def group_conditions(attribute: str, groups: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Return the (key, slug) pairs a survey group stands for (empty when outside the vocabulary)."""
    keys = attribute_keys(attribute)
    if keys is None or len(keys) != len(groups):
        return ()
    conditions = []
    for key, group in zip(keys, groups, strict=True):
        slug = canonical(key, group)
        if slug is None:
            return ()
        conditions.append((key, slug))
    return tuple(conditions)


def age_group_of(age: float) -> str:
    """Return the age group of an age in years (ValueError outside 0..130)."""
    if not 0 <= age <= 130:
        raise ValueError(f"age {age:g} is not between 0 and 130")
    for bound, slug in ((18, "0-17"), (30, "18-29"), (50, "30-49"), (65, "50-64")):
        if age < bound:
            return slug
    return "65+"


def income_bracket_of(amount: float) -> str:
    """Return the income bracket of a yearly household income in dollars (ValueError below 0)."""
    if amount < 0:
        raise ValueError(f"income {amount:g} is negative")
    for bound, slug in ((30_000, "under_30k"), (50_000, "30k_50k"), (75_000, "50k_75k"),
                        (100_000, "75k_100k")):
        if amount < bound:
            return slug
    return "100k_plus"


def describe(attributes: Mapping[str, object]) -> dict[str, str]:
    """Return the canonical keys of attributes with their labels."""
    return {key: label(key, str(attributes[key])) for key in KEYS if attributes.get(key)}
