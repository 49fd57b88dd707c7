"""The gate's character measures are what their docstrings define, character by character, on any
text: the fast paths (ASCII counted by ``bytes.translate``, a control-character class, the early
exits of the age, group and either-or rules) must give the definition's answer. Every persona a
run imports goes through them, so they are written for speed; these properties keep them exact.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from personahub.personas import quality as q

ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=80)
ANY = st.text(max_size=60)
WORDS = st.lists(st.sampled_from(
    ["who", "WHO", "Her", "retired", "RETIRED", "as", "AI", "Language", "Model", "or", "OR", "Or",
     "AND/OR", "and/or", "/", "nurse", "nurses", "two", "Two", "one",
     "aged", "42", "years", "old", "a", "A", "group", "of", "members", "she", "I", "sure", "here",
     "is", "as", "an", "ai", "language", "model", "teacher", "Dr.", "J.", "Smith", "farmer",
     "farmers", "’s", ",", "doctor/lawyer", "half", "forty"]), min_size=1, max_size=9).map(" ".join)


def letter_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 1.0


def digit_share(text: str) -> float:
    alnum = [c for c in text if c.isalnum()]
    return sum(c.isdigit() for c in alnum) / len(alnum) if alnum else 0.0


def script_share(text: str, scripts: tuple[str, ...]) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    return sum(unicodedata.name(c, "?").split(" ")[0] in scripts for c in letters) / len(letters)


def wide(text: str) -> int:
    return sum(unicodedata.east_asian_width(c) in "WF" and c.isalpha() for c in text)


def age_only(text: str) -> bool:
    tokens = re.findall(r"\d+(?:[.,]\d+)?|[^\W\d_]+(?:/[^\W\d_]+)?", text.lower())
    numbers = [t for t in tokens if t[0].isdigit() or t in q._NUMBER_WORDS]
    return bool(numbers) and all(t in q._AGE_WORDS or t in numbers for t in tokens)


def many_people(text: str) -> bool:
    if re.search(q._GROUP_OPENERS.pattern, text, re.IGNORECASE):
        return True
    words = q._WORD.findall(text)
    if not words:
        return False
    first = words[0]
    if first.lower() in q._NUMBER_WORDS - {"one"} and len(words) > 1:
        return q._plural_role(words[1])
    return text[len(first):len(first) + 1] != "'" and q._plural_role(first)


def either_or(text: str) -> bool:
    return any(q._singular_role(a) and q._singular_role(b)
               for a, b in q._EITHER_OR.findall(q._head(text)))


@settings(max_examples=400)
@given(st.one_of(ASCII, ANY))
@example("aſ an aı, a Language Model")  # folds IGNORECASE makes outside ASCII
def test_the_character_measures_are_their_definitions(text: str) -> None:
    assert q._person_cue(text) == bool(q._PERSON_OPENING.match(text) or q._PERSON_CUES.search(text))
    assert q._meta_phrase(text) == bool(q._META_PHRASE.search(text))
    assert q.letter_share(text) == letter_share(text)
    assert q.digit_share(text) == digit_share(text)
    assert q._wide(text) == wide(text)
    for scripts in (("LATIN",), ("CYRILLIC",), ("CJK", "HIRAGANA", "KATAKANA")):
        assert q.script_share(text, scripts) == script_share(text, scripts)
    control = any(unicodedata.category(c) == "Cc" for c in text)
    assert (q._control(text, None) is not None) == control


@settings(max_examples=400)
@given(st.one_of(WORDS, ASCII))
@example("A nurse OR a teacher")
@example("Nurse Or Teacher from Leeds")
@example("doctor/lawyer")
@example("Two nurses")
@example("aged 42 and a half")
@example("SHE runs the ferry")
@example("As An AI, I would say a nurse")
@example("a Language Model enthusiast who is 42-YEAR-OLD")
def test_the_rules_early_exits_change_no_answer(text: str) -> None:
    assert q._person_cue(text) == bool(q._PERSON_OPENING.match(text) or q._PERSON_CUES.search(text))
    assert q._meta_phrase(text) == bool(q._META_PHRASE.search(text))
    assert q._age_only(text) == age_only(text)
    assert q._many_people(text) == many_people(text)
    assert q._either_or(text) == either_or(text)


def test_the_control_class_is_unicodes() -> None:
    """Cc is a closed set (Unicode's stability policy): 65 code points, all below U+00A0."""
    every = {chr(i) for i in range(0x800) if unicodedata.category(chr(i)) == "Cc"}
    assert len(every) == 65
    assert {c for c in map(chr, range(0x800)) if q._CONTROL_CHAR.match(c)} == every
