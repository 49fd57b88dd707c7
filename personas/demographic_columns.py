"""Attribute-table columns to canonical demographics, for the attributes importer.

A column named like a canonical key must hold that key's vocabulary; an unknown value is a bad
record. A column a key derives from (age -> age_group, state -> region) is kept and the key added
when the value maps; unmapped values are counted. A key given directly wins over a derived one.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from personahub.personas.demographics import (
    KEYS,
    age_group_of,
    canonical,
    income_bracket_of,
    values_of,
)

__all__ = ["SOURCES", "DemographicProblem", "TABLE_COLUMNS", "normalise_row", "parse", "region_of_state"]

# columns each canonical key can be derived from, in order of preference
SOURCES: dict[str, tuple[str, ...]] = {
    "age_group": ("age", "age_years"),
    "sex": ("gender",),
    "race_ethnicity": ("race", "ethnicity", "race_or_ethnicity"),
    "region": ("census_region", "state", "us_state"),
    "education": ("education_level", "educational_attainment", "highest_education"),
    "income": ("household_income", "annual_income", "income_bracket"),
    "party": ("political_party", "party_affiliation", "political_affiliation", "party_id"),
    "ideology": ("political_ideology", "political_views"),
    "marital_status": ("marital",),
}
# column names that mark a table with a persona column as an attribute table
TABLE_COLUMNS: frozenset[str] = frozenset(
    {*KEYS, *(c for columns in SOURCES.values() for c in columns),
     "occupation", "city", "country", "zipcode"})

# US states and DC by postal code and name, in the Census Bureau's four regions
_REGIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "northeast": (("CT", "Connecticut"), ("ME", "Maine"), ("MA", "Massachusetts"),
                  ("NH", "New Hampshire"), ("RI", "Rhode Island"), ("VT", "Vermont"),
                  ("NJ", "New Jersey"), ("NY", "New York"), ("PA", "Pennsylvania")),
    "midwest": (("IL", "Illinois"), ("IN", "Indiana"), ("MI", "Michigan"), ("OH", "Ohio"),
                ("WI", "Wisconsin"), ("IA", "Iowa"), ("KS", "Kansas"), ("MN", "Minnesota"),
                ("MO", "Missouri"), ("NE", "Nebraska"), ("ND", "North Dakota"),
                ("SD", "South Dakota")),
    "south": (("DE", "Delaware"), ("FL", "Florida"), ("GA", "Georgia"), ("MD", "Maryland"),
              ("NC", "North Carolina"), ("SC", "South Carolina"), ("VA", "Virginia"),
              ("DC", "District of Columbia"), ("WV", "West Virginia"), ("AL", "Alabama"),
              ("KY", "Kentucky"), ("MS", "Mississippi"), ("TN", "Tennessee"), ("AR", "Arkansas"),
              ("LA", "Louisiana"), ("OK", "Oklahoma"), ("TX", "Texas")),
    "west": (("AZ", "Arizona"), ("CO", "Colorado"), ("ID", "Idaho"), ("MT", "Montana"),
             ("NV", "Nevada"), ("NM", "New Mexico"), ("UT", "Utah"), ("WY", "Wyoming"),
             ("AK", "Alaska"), ("CA", "California"), ("HI", "Hawaii"), ("OR", "Oregon"),
             ("WA", "Washington")),
}
_STATE_REGION: dict[str, str] = {
    spelling.casefold(): region
    for region, states in _REGIONS.items() for state in states for spelling in state
}
_STATE_REGION["washington dc"] = _STATE_REGION["washington, d.c."] = "south"
STATE_NAMES: dict[str, str] = {name: region for region, states in _REGIONS.items()
                               for _, name in states}


class DemographicProblem(ValueError):
    """A column named like a canonical key holds a value outside its vocabulary."""


def region_of_state(state: object) -> str | None:
    """Return the Census region of a US state (postal code or name), or None."""
    return _STATE_REGION.get(str(state).strip().casefold()) if state is not None else None


def _number(raw: object) -> float | None:
    """Return raw as a number when it is one (bools are not), else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    text = str(raw).strip().replace(",", "").removeprefix("$")
    try:
        return float(text)
    except ValueError:
        return None


def parse(key: str, raw: object) -> str | None:
    """Return the slug of key that raw stands for: a vocabulary spelling, an age, an income or a US
    state.
    """
    slug = canonical(key, raw)
    if slug is not None:
        return slug
    number = _number(raw)
    try:
        if key == "age_group" and number is not None:
            return age_group_of(number)
        if key == "income" and number is not None:
            return income_bracket_of(number)
    except ValueError:
        return None
    if key == "region":
        return region_of_state(raw)
    return None


@lru_cache(maxsize=1 << 16)
def _parse_cached(key: str, raw: str | int | float) -> str | None:
    return parse(key, raw)


def _parse_value(key: str, raw: object) -> str | None:
    """Parse a value, cached: tables repeat their values on every row.

    Uncached it cost about 30% of a 200,000-row import's rate (21,000 -> 15,000 rows/s).
    """
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        return _parse_cached(key, raw)
    return parse(key, raw)


def _present(value: object) -> bool:
    return value is not None and value != ""


# the keys a column feeds, to skip rows no demographic column touches
_FEEDS: dict[str, str] = {**{k: k for k in KEYS},
                          **{c: k for k, columns in SOURCES.items() for c in columns}}


def normalise_row(fields: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """Return fields with canonical keys normalised or derived, and the derivable columns that mapped
    to nothing.
    """
    out = dict(fields)
    unmapped: list[str] = []
    touched = {_FEEDS[c] for c in fields if c in _FEEDS}
    for key in KEYS:
        if key not in touched:
            continue
        if _present(fields.get(key)):
            slug = _parse_value(key, fields[key])
            if slug is None:
                raise DemographicProblem(
                    f'column "{key}" holds {fields[key]!r}, not one of {", ".join(values_of(key))}'
                    " (or a known spelling of one)")
            out[key] = slug
            continue
        for column in SOURCES[key]:
            if _present(fields.get(column)):
                slug = _parse_value(key, fields[column])
                if slug is not None:
                    out[key] = slug
                    break
                unmapped.append(column)
    return out, unmapped
