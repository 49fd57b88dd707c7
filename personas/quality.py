"""The quality gate for generated personas, and the rejected rows every gate writes.

Small models asked for "a persona" may answer with a bare name, an age, a heading or chatter.
Rules run in a fixed order and the first that fails names the reason; no model is called.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import duckdb

MIN_CHARS = 15  # "A local historian" (17) passes; "I am a" does not
MIN_WORDS = 3
MAX_CHARS = 600  # a persona is a sentence or two; Persona Hub's run far below this
MAX_WORDS = 100
PERSONA_MAX_CHARS = 300  # the maxLength a model is asked to keep within (one sentence)
RELATION_MAX_CHARS = 40  # a relation label: one or two words ("night-shift colleague")
MIN_LETTER_SHARE = 0.7  # letters among the non-space characters
MAX_DIGIT_SHARE = 0.25  # digits among letters and digits ("1234567890 Patients": 0.56)
MIN_SCRIPT_SHARE = 0.75  # letters in the requested language's script, among all letters
MAX_NAME_TOKENS = 5  # "Dr. Maria de la Cruz" is a bare name; longer runs are something else
MAX_ECHO_SHARE = 0.8
TOP_REASONS = 3


@dataclass(frozen=True, slots=True)
class QualityIssue:
    """Why a generated persona or item was rejected: a stable code and a human message."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`"}
_LABEL = re.compile(r"^\s*(?:\*\*)?persona(?:\s*\d+)?(?:\*\*)?\s*[:：]\s*(?:\*\*)?", re.IGNORECASE)


def clean_persona_text(text: str) -> str:
    """Strip surrounding whitespace, quotes and a leading 'Persona:' label (nothing else)."""
    previous = None
    text = text.strip()
    while text != previous:
        previous = text
        text = _LABEL.sub("", text, count=1).strip()
        closing = _QUOTES.get(text[:1])
        if closing and len(text) >= 2 and text[-1] == closing and closing not in text[1:-1]:
            text = text[1:-1].strip()
    return text


_PLACEHOLDERS = frozenset({
    "n/a", "na", "none", "null", "nil", "unknown", "tbd", "todo", "-", "...", "persona",
    "a persona", "the persona", "person", "a person", "someone", "anyone", "no one", "nobody",
    "lorem ipsum", "not applicable", "not available", "same as above", "example", "placeholder",
})
# model chatter: an opening (at the start only) or a phrase anywhere
_META_OPENING = re.compile(
    r"(?:sure|certainly|of course|okay|ok|absolutely|great question)\b"
    r"|(?:here(?:'s|’s| is| are)|below is|the following)\b"
    r"|(?:i'm|i’m|i am) (?:sorry|unable|not able)|i can(?:not|'t|’t)\b"
    r"|(?:output|answer|response|json)\s*:|[{\[`<]",
    re.IGNORECASE)
_META_PHRASE = re.compile(r"\bas an ai\b|\blanguage model\b", re.IGNORECASE)
_TITLES = frozenset({"dr", "mr", "mrs", "ms", "miss", "mx", "prof", "professor", "sir", "dame",
                     "lady", "lord", "rev", "fr", "st", "capt", "captain", "madam", "señor", "sr"})
_NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "md", "phd", "esq"})
_PARTICLES = frozenset({"de", "da", "del", "della", "der", "di", "van", "von", "la", "le", "du",
                        "bin", "al", "el", "ibn", "y", "dos", "das", "ten", "ter"})
_NAME_PARTS = _TITLES | _NAME_SUFFIXES | _PARTICLES  # tokens a bare name may hold besides names
_AGE_WORDS = frozenset({"a", "an", "age", "aged", "is", "year", "years", "yr", "yrs", "y/o", "yo",
                        "old", "month", "months", "week", "weeks", "day", "days", "and", "half"})
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred".split())
_COUNTS = _NUMBER_WORDS - {"one"}  # a count of people opens a plural: "Two farmers"
# words a text cannot end on without a final stop (prepositions can: "logged on")
_DANGLING = frozenset({"a", "an", "the", "of", "and", "or", "who", "whose", "whom", "which",
                       "that", "is", "are", "am", "was", "his", "their", "my", "but"})
_SMALL_WORDS = frozenset({"the", "a", "an", "and", "of", "in", "on", "at", "to", "for", "my",
                          "this", "that", "it", "is", "i", "we", "you"})
# words that carry no description of their own (not counted when comparing two personas)
_FUNCTION_WORDS = _DANGLING | _SMALL_WORDS | frozenset(
    "from with by as who aged has have had her him she he they them its our your".split())

ROLE_WORDS = frozenset("""
person people man woman men women someone somebody individual guy lady gentleman boy girl kid
child children teen teenager adolescent toddler baby infant adult senior elder retiree pensioner
mother father mom mum dad parent grandparent grandmother grandfather grandma grandpa son daughter
sister brother sibling wife husband spouse partner widow widower aunt uncle cousin nephew niece
twin friend neighbour neighbor resident citizen local native immigrant migrant refugee expat
expatriate newcomer tourist traveler traveller commuter visitor guest fan enthusiast lover hobbyist
amateur beginner novice expert veteran professional freelancer graduate alumnus alumna student
pupil learner apprentice intern trainee volunteer advocate member leader owner founder
cofounder employee worker staffer colleague boss client customer patient tenant landlord landlady
homeowner renter voter taxpayer user player gamer reader writer viewer listener follower supporter
critic skeptic sceptic believer survivor caregiver carer outsider insider loner newlywed
nurse doctor physician surgeon dentist midwife paramedic therapist psychologist psychiatrist
counsellor counselor teacher professor lecturer tutor instructor coach trainer principal
headteacher librarian archivist curator researcher scientist engineer developer programmer coder
designer architect artist painter sculptor illustrator photographer filmmaker director producer
actor actress musician singer composer drummer dancer poet novelist author journalist reporter
editor blogger podcaster influencer streamer chef cook baker butcher brewer barista bartender
waiter waitress farmer rancher fisherman fisher gardener florist shepherd forester ranger miner
welder plumber electrician carpenter mason stonemason builder mechanic technician machinist
operator driver pilot captain sailor skipper deckhand navigator conductor porter courier postman
clerk cashier accountant auditor banker broker trader investor economist analyst consultant
manager executive entrepreneur businessman businesswoman shopkeeper merchant vendor seller
salesperson salesman saleswoman retailer lawyer attorney solicitor barrister judge paralegal
notary officer policeman policewoman detective inspector guard soldier sergeant lieutenant
colonel firefighter diplomat politician mayor councillor councilor senator minister official
bureaucrat administrator secretary assistant aide receptionist cleaner janitor caretaker
housekeeper nanny babysitter tailor seamstress cobbler jeweller jeweler potter weaver translator
interpreter historian philosopher theologian priest pastor vicar rabbi imam monk nun chaplain
missionary mathematician statistician physicist chemist biologist astronomer veterinarian vet
surveyor planner warden steward stewardess hairdresser barber beautician model athlete runner
swimmer climber footballer referee umpire jockey boxer wrestler hacker sysadmin campaigner
organiser organizer host hostess homemaker housewife househusband dropout heir heiress chief
ceo cto cfo president chair chairperson director supervisor foreman apprentice bookkeeper
cartographer surveyor pharmacist optician dietitian nutritionist hygienist radiologist
sommelier innkeeper publican landowner smallholder crofter labourer laborer handyman contractor
auctioneer collector dealer coordinator specialist strategist commander undergraduate
postgraduate postdoc fresher freshman sophomore schoolchild schoolboy schoolgirl householder
""".split())
_ROLE_SUFFIXES = ("ist", "ician", "eer", "keeper", "maker", "monger", "smith", "wright",
                  "grapher", "worker", "owner", "holder", "seller", "driver", "writer", "player",
                  "builder", "grower", "farmer", "hunter", "fighter", "trainer", "teacher",
                  "manager", "leader", "person", "woman", "man", "mason", "herd", "ologist")
_NOT_ROLES = frozenset({"list", "mist", "twist", "exist", "assist", "resist", "insist", "consist",
                        "persist", "wrist", "fist", "gist", "enlist", "playlist", "checklist",
                        "wishlist", "shortlist", "blacklist", "whitelist", "waitlist", "tracklist",
                        "setlist", "amidst", "midst", "whilst", "against", "human", "german",
                        "roman", "ottoman", "inhuman", "superhuman", "career", "veneer",
                        "desist", "subsist"})
# what says a text is about a person: a pronoun opening it or a cue anywhere
_PERSON_OPENING = re.compile(r"(?:i|i'm|i’m|she|he|they|we)\b", re.IGNORECASE)
_PERSON_CUES = re.compile(
    r"\b(?:who|whose|whom)\b"
    r"|\b(?:her|his|herself|himself)\b"
    r"|\b\d{1,3}[- ]?(?:year|yr)s?[- ]old\b|\baged \d|\bin (?:his|her|their) (?:early |mid |mid-"
    r"|late )?(?:teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties|\d0s)\b"
    r"|\b(?:interested in|fascinated by|passionate about|obsessed with|devoted to|dedicated to"
    r"|speciali[sz](?:ed|ing) in|working (?:as|at|in|on)|living (?:in|on|with)|studying"
    r"|raised (?:in|on|by)|born (?:in|on|into)|grew up|retired|aspiring|self-taught|avid|budding"
    r"|lifelong|seasoned|former|married|divorced|widowed|pregnant|unemployed|homeschooling"
    r"|young|elderly|middle-aged|teenage|learning to|trying to|hoping to|struggling to|juggling"
    r"|raising|caring for|looking for|preparing for)\b",
    re.IGNORECASE)
# The same cues, case-sensitive on a lowercased ASCII text: IGNORECASE finds nothing more there
# and re scans a case-sensitive pattern several times faster.
_PERSON_OPENING_LOWER = re.compile(_PERSON_OPENING.pattern)
_PERSON_CUES_LOWER = re.compile(_PERSON_CUES.pattern)
_META_PHRASE_LOWER = re.compile(_META_PHRASE.pattern)


def _person_cue(text: str) -> bool:
    if text.isascii():
        low = text.lower()
        return bool(_PERSON_OPENING_LOWER.match(low) or _PERSON_CUES_LOWER.search(low))
    return bool(_PERSON_OPENING.match(text) or _PERSON_CUES.search(text))


def _meta_phrase(text: str) -> bool:
    if text.isascii():
        low = text.lower()
        return ("as an ai" in low or "language model" in low) and bool(_META_PHRASE_LOWER.search(low))
    return bool(_META_PHRASE.search(text))


_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

# Languages the script rule knows -> their Unicode scripts. Latin-script languages are not told
# apart: the rule catches an answer in the wrong script, not French for Spanish.
_LATIN = ("LATIN",)
_LANGUAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    *((code, name, _LATIN) for code, name in (
        ("en", "English"), ("fr", "French"), ("de", "German"), ("es", "Spanish"),
        ("pt", "Portuguese"), ("it", "Italian"), ("nl", "Dutch"), ("sv", "Swedish"),
        ("da", "Danish"), ("no", "Norwegian"), ("fi", "Finnish"), ("pl", "Polish"),
        ("cs", "Czech"), ("tr", "Turkish"), ("id", "Indonesian"), ("vi", "Vietnamese"),
        ("ro", "Romanian"), ("hu", "Hungarian"), ("sw", "Swahili"), ("et", "Estonian"))),
    *((code, name, ("CYRILLIC",)) for code, name in (
        ("ru", "Russian"), ("uk", "Ukrainian"), ("bg", "Bulgarian"), ("sr", "Serbian"))),
    ("zh", "Chinese", ("CJK",)),
    ("ja", "Japanese", ("CJK", "HIRAGANA", "KATAKANA")),
    ("ko", "Korean", ("HANGUL", "CJK")),
    *((code, name, ("ARABIC",)) for code, name in (
        ("ar", "Arabic"), ("fa", "Persian"), ("ur", "Urdu"))),
    ("he", "Hebrew", ("HEBREW",)),
    ("el", "Greek", ("GREEK",)),
    *((code, name, ("DEVANAGARI",)) for code, name in (
        ("hi", "Hindi"), ("mr", "Marathi"), ("ne", "Nepali"))),
    ("th", "Thai", ("THAI",)),
)
_SCRIPT_NAMES = {"CJK": "Han"}
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    key: scripts for code, name, scripts in _LANGUAGES for key in (code, name.lower())}
LANGUAGE_NAMES: dict[str, str] = {
    key: name for code, name, _ in _LANGUAGES for key in (code, name.lower())}


def _language_key(language: str) -> str:
    key = language.strip().lower().replace("_", "-").split("-")[0]
    if key not in LANGUAGE_SCRIPTS:
        raise ValueError(f"language {language!r}: unknown; use one of "
                         f"{', '.join(code for code, _, _ in _LANGUAGES)} (or its English name)")
    return key


def language_name(language: str) -> str:
    """Return the English name of a language code or name, for prompts."""
    return LANGUAGE_NAMES[_language_key(language)]


def language_scripts(language: str) -> tuple[str, ...]:
    """Return the Unicode scripts of a language code or name."""
    return LANGUAGE_SCRIPTS[_language_key(language)]


# ASCII letters, digits and spaces as bytes: an ASCII text's counts are its length less what
# bytes.translate leaves when they are deleted (one C pass each)
_ASCII_LETTERS = bytes(c for c in range(128) if chr(c).isalpha())
_ASCII_DIGITS = bytes(c for c in range(128) if chr(c).isdigit())
_ASCII_SPACES = bytes(c for c in range(128) if chr(c).isspace())


def _ascii_count(raw: bytes, kind: bytes) -> int:
    return len(raw) - len(raw.translate(None, kind))


def letter_share(text: str) -> float:
    """Return the share of letters among non-space characters (1.0 when empty)."""
    if text.isascii():
        raw = text.encode("ascii")
        non_space = len(raw) - _ascii_count(raw, _ASCII_SPACES)
        return _ascii_count(raw, _ASCII_LETTERS) / non_space if non_space else 1.0
    non_space = len(text) - sum(map(str.isspace, text))
    return sum(map(str.isalpha, text)) / non_space if non_space else 1.0


def digit_share(text: str) -> float:
    """Return the share of digits among letters and digits (0.0 when none)."""
    if text.isascii():
        raw = text.encode("ascii")
        digits = _ascii_count(raw, _ASCII_DIGITS)
        alnum = digits + _ascii_count(raw, _ASCII_LETTERS)
        return digits / alnum if alnum else 0.0
    alnum = sum(map(str.isalnum, text))
    return sum(map(str.isdigit, text)) / alnum if alnum else 0.0


def script_share(text: str, scripts: tuple[str, ...]) -> float:
    """Return the share of letters written in one of the scripts (1.0 when no letters)."""
    if text.isascii():
        return 1.0 if "LATIN" in scripts or not any(map(str.isalpha, text)) else 0.0
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    return sum(unicodedata.name(c, "?").split(" ")[0] in scripts for c in letters) / len(letters)


def _wide(text: str) -> int:
    """Count letters of wide scripts (Han, kana, Hangul)."""
    if text.isascii():
        return 0
    return sum(unicodedata.east_asian_width(c) in "WF" and c.isalpha() for c in text)


def text_length(text: str) -> int:
    """Count characters, a wide (CJK) letter as two, as it carries about two Latin letters' worth."""
    return len(text) + _wide(text)


def word_count(text: str) -> int:
    """Count words, plus one per two wide letters (CJK text has no spaces)."""
    return len(text.split()) + _wide(text) // 2


def is_role_word(word: str) -> bool:
    """Whether the word names a person by role or situation (plurals and compounds folded)."""
    word = word.lower().strip("'’")
    parts = {word, word.split("-")[-1]}
    for part in list(parts):
        if part.endswith("ies"):
            parts.add(part[:-3] + "y")
        if part.endswith("es"):
            parts.add(part[:-2])
        if part.endswith("s"):
            parts.add(part[:-1])
    for part in parts:
        if part in ROLE_WORDS:
            return True
        if part not in _NOT_ROLES and len(part) >= 6 and part.endswith(_ROLE_SUFFIXES):
            return True
    return False


def _is_name_token(token: str) -> bool:
    bare = token.strip(".,;")
    if not bare:
        return True  # a stray comma or dot between name parts
    low = bare.lower()
    if low in _TITLES or low in _NAME_SUFFIXES or low in _PARTICLES:
        return True
    if len(bare) <= 2 and bare[0].isupper() and token.endswith("."):
        return True  # an initial: "J."
    if low in _SMALL_WORDS or is_role_word(low):
        return False
    return bare[0].isupper() and bool(_WORD.fullmatch(bare))


def _bare_name(tokens: list[str]) -> bool:
    if not 0 < len(tokens) <= MAX_NAME_TOKENS:
        return False
    return (any(t.strip(".,;").lower() not in _NAME_PARTS for t in tokens)
            and all(_is_name_token(t) for t in tokens))


_AGE_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[^\W\d_]+(?:/[^\W\d_]+)?")


def _age_only(text: str) -> bool:
    """Whether the text is numbers and age words only, with at least one number."""
    number = False
    for found in _AGE_TOKEN.finditer(text.lower()):
        token = found.group()
        if token[0].isdigit() or token in _NUMBER_WORDS:
            number = True
        elif token not in _AGE_WORDS:
            return False
    return number


def _fragment(text: str) -> bool:
    if text[-1] in ":;,-–—(/&":
        return True
    if not text[-1].isalpha():  # ends in a full stop or the like: the words are not needed
        return False
    words = _WORD.findall(text)
    return bool(words) and words[-1].lower() in _DANGLING


def _has_role(text: str) -> bool:
    return (_person_cue(text)
            or any(is_role_word(w) for w in _WORD.findall(text)))


def _judges_roles(text: str, language: str | None) -> bool:
    """Whether the role rule applies: it knows English words only, so English or unspecified requests."""
    if language is not None and language_name(language) != "English":
        return False
    return script_share(text, _LATIN) >= MIN_SCRIPT_SHARE


Rule = Callable[[str, str | None], QualityIssue | None]
# Unicode's control characters (category Cc) are exactly these 65 code points
_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f-\x9f]")


def _control(text: str, language: str | None) -> QualityIssue | None:
    if _CONTROL_CHAR.search(text):
        return QualityIssue("control_chars", "holds control characters (binary data, not text)")
    return None


def _placeholder(text: str, language: str | None) -> QualityIssue | None:
    if text.lower().strip(" .!") in _PLACEHOLDERS:
        return QualityIssue("placeholder", f"{text!r} is a placeholder, not a persona")
    return None


def _meta(text: str, language: str | None) -> QualityIssue | None:
    if _META_OPENING.match(text) or _meta_phrase(text):
        return QualityIssue("meta", "model chatter or markup, not a persona description")
    return None


def _mostly_digits(text: str, language: str | None) -> QualityIssue | None:
    if digit_share(text) > MAX_DIGIT_SHARE:
        return QualityIssue("mostly_digits", f"more than {MAX_DIGIT_SHARE:.0%} of its letters and "
                                             "digits are digits")
    return None


def _name_only(text: str, language: str | None) -> QualityIssue | None:
    if _bare_name(text.split()):
        return QualityIssue("bare_name", f"{text!r} is a name, not a description of a person")
    return None


def _age_alone(text: str, language: str | None) -> QualityIssue | None:
    if _age_only(text):
        return QualityIssue("age_only", f"{text!r} gives an age and nothing else")
    return None


def _length(text: str, language: str | None) -> QualityIssue | None:
    length, n_words = text_length(text), word_count(text)
    if length < MIN_CHARS or n_words < MIN_WORDS:
        return QualityIssue("too_short", f"under {MIN_CHARS} characters or {MIN_WORDS} words")
    if length > MAX_CHARS or n_words > MAX_WORDS:
        return QualityIssue("too_long", f"over {MAX_CHARS} characters or {MAX_WORDS} words")
    return None


def _letters(text: str, language: str | None) -> QualityIssue | None:
    if letter_share(text) < MIN_LETTER_SHARE:
        return QualityIssue("few_letters", f"under {MIN_LETTER_SHARE:.0%} of its characters are "
                                           "letters")
    return None


def _language(text: str, language: str | None) -> QualityIssue | None:
    if language is None:
        return None
    scripts = language_scripts(language)
    if script_share(text, scripts) < MIN_SCRIPT_SHARE:
        names = "/".join(_SCRIPT_NAMES.get(s, s.title()) for s in scripts)
        return QualityIssue("wrong_language", f"{language_name(language)} was asked for; under "
                                              f"{MIN_SCRIPT_SHARE:.0%} of the letters are {names}")
    return None


def _unfinished(text: str, language: str | None) -> QualityIssue | None:
    if _fragment(text):
        return QualityIssue("fragment", "ends mid-sentence")
    return None


def _role(text: str, language: str | None) -> QualityIssue | None:
    if _judges_roles(text, language) and not _has_role(text):
        return QualityIssue("no_role", "names no role, occupation or situation of a person")
    return None


# The rules in order: binary data first, then specific junk shapes (so "42" is mostly_digits, not
# too_short), the role rule last (it is the loosest).
PERSONA_RULES: tuple[Rule, ...] = (_control, _placeholder, _meta, _mostly_digits, _name_only,
                                   _age_alone, _length, _letters, _language, _unfinished, _role)


def screen_persona(text: str, *, language: str | None = None) -> QualityIssue | None:
    """Return the first persona rule the cleaned text fails, or None; language adds the script check."""
    text = " ".join(text.split())
    if not text:
        return QualityIssue("empty", "the persona is empty")
    for rule in PERSONA_RULES:
        issue = rule(text, language)
        if issue is not None:
            return issue
    return None


# Coherence: form says a text could be a persona, coherence that it is one person.

_GROUP_OPENERS = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:group|team|family|couple|pair|crew|panel|community|class|club|"
    r"band|board|committee|network|society|gang|circle|bunch|handful|number|set)\s+of\b"
    r"|^(?:(?:the\s+)?members|several|many|various|numerous|multiple|both|all|some|most)\b",
    re.IGNORECASE)
_PLURAL_PEOPLE = frozenset({"people", "children", "men", "women", "folks", "folk", "kids",
                            "persons", "individuals", "adults", "teens", "teenagers", "families"})
_HEAD_END = re.compile(r"\s(?:who|whose|whom|which|that|with|from|in|at|on|of|for|to|by|"
                       r"working|living|known)\b|[,;:.!?(]", re.IGNORECASE)
_EITHER_OR = re.compile(r"([^\W\d_]+)\s*(?:\bor\b|\band/or\b|/)\s*(?:(?:a|an|the)\s+)?"
                        r"([^\W\d_]+)", re.IGNORECASE)
MAX_RELATION_WORDS = 4
_RELATION_PLACEHOLDERS = frozenset({"relation", "relationship", "related", "other", "unknown",
                                    "none", "n/a", "na", "someone", "person", "same", "self"})


def _head(text: str) -> str:
    """Return the head noun phrase: 'A nurse or teacher' of 'A nurse or teacher who ...'."""
    found = _HEAD_END.search(text)
    return text[:found.start()] if found else text


def _plural_role(word: str) -> bool:
    word = word.lower().strip("'’")
    return (word in _PLURAL_PEOPLE
            or (word.endswith("s") and word not in ROLE_WORDS and is_role_word(word)))


def _singular_role(word: str) -> bool:
    return is_role_word(word) and not _plural_role(word)


def _many_people(text: str) -> bool:
    """Whether the text names a group or a plural: 'A group of nurses', 'Two farmers'."""
    if _GROUP_OPENERS.match(text):
        return True
    words = _WORD.finditer(text)
    found = next(words, None)
    if found is None:
        return False
    first = found.group()
    if first.lower() in _COUNTS and (second := next(words, None)) is not None:
        return _plural_role(second.group())  # "Two farmers", not "Two-time champion"
    return text[len(first):len(first) + 1] != "'" and _plural_role(first)


def _either_or(text: str) -> bool:
    """Whether the head offers two roles as alternatives: 'A nurse or a teacher'."""
    head = _head(text)
    if "/" not in head and "or" not in head.lower():
        return False
    return any(_singular_role(a) and _singular_role(b) for a, b in _EITHER_OR.findall(head))


def relation_issue(relation: str) -> QualityIssue | None:
    """Return an issue when a relation label is a placeholder, a list or a sentence."""
    label = " ".join(relation.lower().split()).strip(" .")
    if not label or label in _RELATION_PLACEHOLDERS:
        return QualityIssue("bad_relation", f"relation {relation!r} names no relation")
    if re.search(r"[,;/&]|\b(?:or|and)\b", label):
        return QualityIssue("bad_relation", f"relation {relation!r} is several relations, "
                                            "not one")
    if len(label.split()) > MAX_RELATION_WORDS:
        return QualityIssue("bad_relation", f"relation {relation!r} is over "
                                            f"{MAX_RELATION_WORDS} words: a sentence, not a label")
    return None


_COPULA = re.compile(r"\b(?:is|are|was|were|am|becomes?|works? as|serves? as|acts? as)\s+", re.IGNORECASE)
_DETERMINERS = frozenset({"a", "an", "the", "his", "her", "their", "my", "its", "our", "your",
                          "this", "that", "one"})


def _role_label(phrase: str) -> str | None:
    """Return the relation label a noun phrase names: 'customer' of 'a customer at Millbrook', or None.

    The phrase is cut at its first preposition, relative word or stop, its determiners are dropped,
    and what is left counts only when it is at most two words ending on a role word.
    """
    words = _head(phrase.strip()).split()
    while words and words[0].lower() in _DETERMINERS:
        words = words[1:]
    if not words or len(words) > 2 or not is_role_word(words[-1]):
        return None
    return " ".join(words).lower()


def repair_relation(relation: str) -> str:
    """Reduce a relation given as a short sentence to its label, deterministically; else keep it.

    Small models often write who the person is instead of a label: "A 58-year-old is a customer
    at Millbrook" becomes "customer", "The nurse who treats her" becomes "nurse". What follows a
    copula is tried first, then the sentence's head; only a phrase of at most two words ending on
    a role word is taken. A list of relations, a placeholder or anything else stays as it was, so
    the relation rule still rejects it.
    """
    label = " ".join(relation.split()).strip(" .")
    if (relation_issue(relation) is None or len(label.split()) <= MAX_RELATION_WORDS
            or re.search(r"[,;/&]|\b(?:or|and)\b", label, re.IGNORECASE)):
        return relation
    copula = _COPULA.search(label)
    found = (_role_label(label[copula.end():]) if copula else None) or _role_label(label)
    return found if found is not None and relation_issue(found) is None else relation


def coherence_issue(text: str, *, relation: str | None = None,
                    language: str | None = None) -> QualityIssue | None:
    """Return the first coherence rule a persona fails, or None.

    It rejects groups, two roles offered as alternatives, and bad relation labels. English only.
    """
    text = " ".join(text.split())
    if relation is not None:
        issue = relation_issue(relation)
        if issue is not None:
            return issue
    if not text or not _judges_roles(text, language):
        return None
    if _many_people(text):
        return QualityIssue("many_people", "names a group or several people, not one person")
    if _either_or(text):
        return QualityIssue("either_or", "offers two roles as alternatives: it does not say "
                                         "who the person is")
    return None


def _content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _FUNCTION_WORDS]


def echo_issue(text: str, shown: str) -> QualityIssue | None:
    """Return an issue when a persona only restates the persona it was asked about.

    Small models asked who is close to "A welder from Osaka aged 24" often answer "A welder from Osaka".
    """
    words = _content_words(text)
    if not words:
        return None
    known = set(_content_words(shown))
    if sum(w in known for w in words) >= MAX_ECHO_SHARE * len(words):
        return QualityIssue("echo", "only restates the persona or the task it was asked "
                                    "about, adding no one new")
    return None


_CLAUSE_END = re.compile(r"[.;,:!?)](?=\s)|\s[-–—]\s")
_MAX_TRIMS = 3


def finish_persona(text: str, *, cut: bool = False) -> str:
    """Cut an unfinished text back to its last whole clause.

    A small model that runs to the length bound writes a good first clause and a broken tail.
    """
    if cut and text and text[-1] not in ".!?":
        text = _drop_tail(text)
    for _ in range(_MAX_TRIMS):
        if not text or not _fragment(text):
            break
        text = _drop_tail(text)
    return text


_TRAILING = " ,;:-–—(/&"


def _drop_tail(text: str) -> str:
    stripped = text.rstrip(_TRAILING)
    if stripped != text:
        return stripped
    ends = [m.start() for m in _CLAUSE_END.finditer(text)]
    if ends:
        return text[:ends[-1]].rstrip(_TRAILING)
    return text[:max(text.rfind(" "), 0)].rstrip(_TRAILING)


def max_length(item: object, name: str) -> int | None:
    """Return the maxLength the item's schema sets on a field, if any."""
    info = getattr(type(item), "model_fields", {}).get(name)
    for meta in getattr(info, "metadata", ()):
        bound = getattr(meta, "max_length", None)
        if isinstance(bound, int):
            return bound
    return None


def gate_persona(text: str, *, language: str | None = None, shown: str | None = None,
                 bound: int | None = None,
                 relation: str | None = None) -> tuple[str, QualityIssue | None]:
    """Clean and finish a persona, and return it with the first form, coherence or echo issue."""
    cleaned = finish_persona(clean_persona_text(text),
                             cut=bound is not None and len(text.strip()) >= bound)
    issue = screen_persona(cleaned, language=language)
    if issue is None:
        issue = coherence_issue(cleaned, relation=relation, language=language)
    if issue is None and shown is not None:
        issue = echo_issue(cleaned, shown)
    return cleaned, issue


def gate_item(item: object, *, language: str | None = None,
              shown: str | None = None) -> tuple[str, QualityIssue | None]:
    """Gate an answered item's persona, bounded by its schema, with its relation."""
    relation = getattr(item, "relation", None)
    return gate_persona(str(getattr(item, "persona", "")), language=language, shown=shown,
                        bound=max_length(item, "persona"),
                        relation=repair_relation(relation) if isinstance(relation, str) else None)


def gate_answer(field: str, language: str | None, value: object, *,
                shown: str | None = None) -> str | None:
    """Return the first rejection when the gate keeps none of an answer's personas, else None.

    Module-level so it pickles to a Ray worker.
    """
    issues = [gate_item(item, language=language, shown=shown)[1]
              for item in getattr(value, field, None) or ()]
    if not issues or any(issue is None for issue in issues):
        return None
    return str(issues[0])


SOURCES = ("text_to_persona", "expand", "emission", "synthesis")


def rejected_row(source: str, issue: QualityIssue, payload: object, *, key: str,
                 run_id: str | None = None, job_id: str | None = None, step: int | None = None,
                 persona_id: str | None = None, task: str | None = None) -> dict[str, object]:
    """Build a rejected row; key makes the id stable, so a retried batch rewrites the same row."""
    if source not in SOURCES:
        raise ValueError(f"rejected source {source!r}: use one of {', '.join(SOURCES)}")
    digest = hashlib.sha1(f"{source}\0{key}".encode()).hexdigest()[:15]
    return {"rejected_id": "r" + digest, "source": source, "run_id": run_id, "job_id": job_id,
            "step": step, "persona_id": persona_id, "task": task, "reason": issue.code,
            "message": issue.message,
            "payload": json.dumps(payload, ensure_ascii=False, default=str)}


def rejected_counts(con: duckdb.DuckDBPyConnection, *, source: str | None = None,
                    run_id: str | None = None, job_id: str | None = None) -> dict[str, int]:
    """Count rejected rows by reason, most frequent first."""
    where = {"source": source, "run_id": run_id, "job_id": job_id}
    given = {k: v for k, v in where.items() if v is not None}
    sql = "SELECT reason, count(*) FROM rejected"
    if given:
        sql += " WHERE " + " AND ".join(f"{k} = ?" for k in given)
    rows = con.execute(sql + " GROUP BY 1 ORDER BY 2 DESC, 1", list(given.values())).fetchall()
    return {reason: int(n) for reason, n in rows}


def tally(counts: Mapping[str, int], reasons: Iterable[str] = ()) -> dict[str, int]:
    """Add one per reason to counts, most frequent first."""
    merged = dict(counts)
    for reason in reasons:
        merged[reason] = merged.get(reason, 0) + 1
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


def rejection_text(counts: Mapping[str, int], what: str = "") -> str:
    """Format 'N WHAT (top reasons: a 2, b 1)'."""
    total = sum(counts.values())
    count = f"{total} {what}" if what else str(total)
    if not total:
        return count
    top = list(tally(counts).items())[:TOP_REASONS]
    return f"{count} (top reasons: {', '.join(f'{r} {n}' for r, n in top)})"


#: what a rejection is, beside a call kept: said wherever both are counted
GATE_AFTER_CALL = ("each one the model answered: its call counts as kept, the gate refused what "
                   "it said")


def rejection_line(counts: Mapping[str, int], what: str) -> str:
    """Return the summary line every command prints about the quality gate; with rejections, it
    says they are answers of calls counted as kept (a call is kept when the model answers in the
    schema; the gate judges what the answer says)."""
    line = f"{what} rejected by the quality gate: {rejection_text(counts)}"
    return f"{line}; {GATE_AFTER_CALL}" if sum(counts.values()) else line
