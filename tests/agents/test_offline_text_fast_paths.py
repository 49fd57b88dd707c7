"""The offline engine's fast text paths agree with the plain regex definitions they replace."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personahub.core.text_measures import _STOPWORDS, cached_keywords
from personahub.models.offline_text import _heading_at, split_sections

WORD = re.compile(r"[A-Za-z][A-Za-z'\-]{2,}")
SECTION = re.compile(r"^#+\s*(.+?)\s*$", re.MULTILINE)

# characters that matter to the two regexes, plus some that lower-case oddly
ALPHABET = st.sampled_from(list("#\n \t\r\x0b\x0c\x1c\x85\u2028'-aZkK_9.é?’")
                           + ["\u212a", "İ", "ß", "\ud800", "😀"])
TEXTS = st.one_of(st.text(ALPHABET, max_size=60), st.text(max_size=60))
WORDY = st.lists(st.one_of(st.sampled_from(sorted(_STOPWORDS)[:40]),
                           st.text(st.sampled_from(list("abcXYZ'- \n\u212a")), max_size=8)),
                 max_size=30).map(" ".join)


# examples per property: a few in the fast subset, the full search in the slow one
EXAMPLES = [150, pytest.param(800, marks=pytest.mark.slow)]


def reference_keywords(text: str, limit: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for match in WORD.finditer(text):
        word = match.group(0).lower().strip("'-")
        if len(word) > 3 and word not in _STOPWORDS:
            seen.setdefault(word, None)
            if len(seen) >= limit:
                break
    return tuple(seen)


def reference_sections(text: str) -> dict[str, str]:
    matches = list(SECTION.finditer(text))
    if not matches:
        return {"": text}
    sections = {"": text[: matches[0].start()]}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[match.group(1).lower()] = text[match.end() : end]
    return sections


@pytest.mark.parametrize("examples", EXAMPLES)
def test_keywords_match_the_regex_definition(examples):
    @settings(max_examples=examples, deadline=None)
    @given(st.one_of(TEXTS, WORDY), st.integers(-1, 6))
    def check(text, limit):
        assert cached_keywords.__wrapped__(text, limit) == reference_keywords(text, limit)

    check()


HEADINGS = st.lists(st.sampled_from(["## A", "#", "##  B  ", "\n", "\n\n", " x", "#C\n", "\u2028", "\x85#",
                                      "\t", "\u3000", "é"]), max_size=12).map("".join)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_headings_match_the_regex_definition(examples):
    @settings(max_examples=examples, deadline=None)
    @given(st.one_of(TEXTS, HEADINGS))
    def check(text):
        for start in [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]:
            expected, got = SECTION.match(text, start), _heading_at(text, start)
            assert (got is None) == (expected is None)
            if got is not None:
                assert (got.start(), got.group(1), got.end()) == (expected.start(), expected.group(1),
                                                                 expected.end())

    check()


@pytest.mark.parametrize("examples", EXAMPLES)
def test_sections_match_the_regex_definition(examples):
    @settings(max_examples=examples, deadline=None)
    @given(st.one_of(TEXTS, HEADINGS))
    def check(text):
        assert split_sections(text) == reference_sections(text)
        assert list(split_sections(text)) == list(reference_sections(text))

    check()
