"""The validator of written personas: contradictions found, other people's facts let pass."""

from __future__ import annotations

import pytest

from personahub.personas.persona_consistency import check_persona_text

ATTRS = {"age_group": "30-49", "sex": "female", "party": "republican", "ideology": "conservative",
         "education": "high_school", "region": "south", "race_ethnicity": "hispanic"}


@pytest.mark.parametrize(("text", "problem"), [
    ("A 62-year-old bookkeeper in a small town.", "says 62 years old, but age_group is 30-49"),
    ("A bookkeeper aged 25 who coaches softball.", "says aged 25"),
    ("A bookkeeper in her 60s who coaches softball.", "says in their 60s"),
    ("A man who keeps the books for a feed store.", "calls the person a man, but sex is female"),
    ("A bookkeeper. He coaches softball and he fishes; his truck is old.", "mostly says he/him"),
    ("A bookkeeper and a lifelong Democrat.", "calls the person Democrat, but party is republican"),
    ("A bookkeeper who always votes Democratic.", "calls the person Democrat"),
    ("A progressive bookkeeper who marches for climate action.", "calls the person liberal"),
    ("A bookkeeper with a master's degree in accounting.", "says \"master's degree\""),
    ("A bookkeeper with a bachelor's degree.", "says \"bachelor's degree\""),
    ("A bookkeeper who lives in Ohio.", "lives in Ohio, but region is south"),
    ("A bookkeeper living in Portland, OR, with two dogs.", "lives in OR"),
    ("A Black woman who keeps the books for a feed store.", "calls the person Black"),
])
def test_contradictions_are_found(text: str, problem: str) -> None:
    problems = check_persona_text(text, ATTRS)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("text", [
    "A 41-year-old Latina bookkeeper in San Antonio who keeps her family's ranch accounts.",
    "A bookkeeper and mother of a 5-year-old daughter; her husband drives a truck and he fishes.",
    "A bookkeeper in her early 40s, a registered Republican, who lives in Tampa, Florida.",
    "A conservative bookkeeper who never went to college and reads about liberal arts schools.",
    "A bookkeeper whose 70-year-old father taught her accounting.",
    "A bookkeeper who finished high school and sings in a church choir.",
    "A Hispanic woman who keeps the books for a feed store.",
    "A bookkeeper who grew up far away.",  # silence contradicts nothing
])
def test_consistent_texts_pass(text: str) -> None:
    assert check_persona_text(text, ATTRS) == []


def test_only_the_given_attributes_are_checked() -> None:
    assert check_persona_text("A 70-year-old man, a Democrat in Ohio.", {}) == []
    assert check_persona_text("A 70-year-old man.", {"age_group": "65+", "sex": "male"}) == []
    moderate = {"ideology": "moderate"}
    assert check_persona_text("A fiscally conservative, socially liberal nurse.", moderate) == []
    assert check_persona_text("A staunchly conservative nurse.", moderate) == [
        "the text says 'staunchly conservative', but ideology is moderate"]
    graduate = {"education": "postgraduate"}
    assert check_persona_text("A nurse with a bachelor's degree and a PhD.", graduate) == []
    assert check_persona_text("A nurse who never finished high school.", graduate) != []
