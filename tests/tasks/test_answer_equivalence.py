"""Answer equivalence (issue 46): a table of hand-made pairs, what must and must not match."""

from __future__ import annotations

import pytest

from personahub.tasks.answer_equivalence import equivalent, parse_answer

MATCH = [
    ("0.5", "1/2"),
    ("0.5", r"\frac{1}{2}"),
    ("1/2", r"\frac{1}{2}"),
    (r"\dfrac{3}{4}", "0.75"),
    ("1/2", "2/4"),
    ("50%", "0.5"),
    (r"50\%", "1/2"),
    ("50%", "50"),  # math-verify's leniency: a percentage is also its number
    ("x=3", "3"),
    ("x = 3", "3"),
    ("3 cm", "3"),
    (r"3\text{ cm}", "3"),
    ("12 dollars", "12"),
    ("$12", "12"),
    ("1,000", "1000"),
    ("3.0", "3"),
    ("1/3", "0.3333333"),  # equal at 6 decimal places
    ("{1, 2}", r"\{2,1\}"),
    ("1, 2", "2, 1"),
    ("[1,2)", "[1, 2)"),
    ("(1, 2)", "(1,2)"),
    ("x^2+2x", "x(x+2)"),
    ("sqrt(2)", r"\sqrt{2}"),
    (r"\boxed{7}", "7"),
    ("Paris.", "paris"),  # undecided by the verifier, same text
]

NO_MATCH = [
    ("2", "3"),
    ("-7", "7"),
    ("5 cm", "3"),
    ("1/3", "0.333"),
    (r"\{1,2\}", r"\{1,3\}"),
    ("[1, 2)", "[1,2]"),
    ("(1,2)", "[1,2]"),
    ("x=3", "y=3"),
    ("0.5", "5"),
]

UNDECIDED = [
    ("three", "3"),
    ("Paris", "London"),
    ("", "4"),
]


@pytest.mark.parametrize(("a", "b"), MATCH)
def test_pairs_that_must_match(a: str, b: str) -> None:
    assert equivalent(a, b) is True
    assert equivalent(b, a) is True


@pytest.mark.parametrize(("a", "b"), NO_MATCH)
def test_pairs_that_must_not_match(a: str, b: str) -> None:
    assert equivalent(a, b) is False
    assert equivalent(b, a) is False


@pytest.mark.parametrize(("a", "b"), UNDECIDED)
def test_what_the_verifier_cannot_read_is_left_undecided(a: str, b: str) -> None:
    assert equivalent(a, b) is None


def test_sets_and_intervals_are_read_as_such_not_as_their_last_number() -> None:
    assert equivalent("{1, 2}", "2") is False
    assert equivalent("[1, 2)", "2") is False
    assert parse_answer("x" * 400) == ()
