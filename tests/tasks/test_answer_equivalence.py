"""Answer equivalence: a table of hand-made pairs, what must and must not match, and what no
single value can be read from (a number followed by a word that changes its value is written out
or left undecided, never cut to its first number)."""

from __future__ import annotations

import pytest

from personahub.tasks.answer_equivalence import equivalent, parse_answer
from personahub.tasks.answer_numbers import read_numbers

MATCH = [
    ("0.5", "1/2"),
    ("0.5", r"\frac{1}{2}"),
    ("1/2", r"\frac{1}{2}"),
    (r"\dfrac{3}{4}", "0.75"),
    ("1/2", "2/4"),
    ("50%", "0.5"),
    (r"50\%", "1/2"),
    ("50%", "50"),  # a percentage is also its number, whatever the number
    ("12.5%", "12.5"),
    ("12.5%", "0.125"),
    ("20 percent", "0.2"),
    ("20 percent", "20"),
    ("20 percent", "20%"),
    ("12.5 per cent", "1/8"),
    # scale words multiply
    ("3 million", "3000000"),
    ("3 million", "3,000,000"),
    ("$3 million", "3000000"),
    ("1.5 million dollars", "1500000"),
    ("2 billion", "2000000000"),
    ("3 hundred thousand", "300000"),
    ("The answer is 3 million.", "3000000"),
    ("x = 3 million", "3000000"),
    # mixed numbers add
    ("3 1/2", "3.5"),
    ("3 1/2", "7/2"),
    ("3½", "3.5"),
    ("3 1/2 cups", "3.5"),
    ("2 and a half", "2.5"),
    ("2 and 1/2", "5/2"),
    ("1 and a quarter", "1.25"),
    ("4 and three quarters", "4.75"),
    ("2 and a half million", "2500000"),
    ("-3 1/2", "-3.5"),
    # signs and grouped digits
    ("-$5", "-5"),
    ("1 000", "1000"),
    ("1 000 000", "1000000"),
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
    # a word that changes the value is never dropped
    ("3 million", "3"),
    ("3 thousand", "3"),
    ("The answer is 3 million", "3"),
    ("2 and a half", "2"),
    ("3 1/2", "3"),
    ("3 1/2", "1.5"),
    ("20 percent", "2"),
    ("50%", "0.5%"),  # two percentages compare their numbers
    ("12.5%", "0.0125"),
]

UNDECIDED = [
    ("three", "3"),
    ("Paris", "London"),
    ("", "4"),
    # two quantities, a range, a bound or two numbers side by side: no single value
    ("5 hours 30 minutes", "5"),
    ("5 hours 30 minutes", "5.5"),
    ("5 hours, 30 minutes", "330"),
    ("3 dollars and 50 cents", "3"),
    ("10 to 12", "10"),
    ("10 to 12", "12"),
    ("10-12", "10"),
    ("10-12", "-2"),
    ("10–12", "10"),
    ("between 10 and 12", "10"),
    ("10 or 12", "10"),
    ("x = 10 to 12", "10"),
    ("at least 5", "5"),
    ("3 4", "7"),
    ("50%", "three"),
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


def test_the_same_range_or_quantity_written_alike_still_matches() -> None:
    """Undecided is for comparing a range with a number; the same text is the same answer."""
    assert equivalent("10 to 12", "10 to 12.") is True
    assert equivalent("5 hours 30 minutes", "5 Hours 30 minutes") is True


def test_worded_numbers_are_read_as_the_verifier_sees_them() -> None:
    assert read_numbers("3 million") == "3000000"
    assert read_numbers("2 and a half million people") == "2500000"
    assert read_numbers("20 per cent") == "20%"
    assert read_numbers("1 1/3") == "4/3"
    assert read_numbers("10 to 12") is None
    assert read_numbers(r"\frac{1}{2}") == r"\frac{1}{2}"  # LaTeX is math-verify's, as written
    assert read_numbers("1, 2") == "1, 2"  # a list of bare numbers too
