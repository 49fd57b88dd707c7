"""Deterministic text and values for the offline engine (not a language model).

It pulls content words out of the prompt's sections and fills a JSON schema field by field from
seeded templates steered by field names: different personas give different words, the same seed and
prompt the same answer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any

from personahub.core.text_measures import cached_keywords
from personahub.models.field_writers import FieldWriters, writer_for

_SECTION = re.compile(r"^#+\s*(.+?)\s*$", re.MULTILINE)
# the same headings, without retrying the title one character at a time
_FAST_SECTION = re.compile(r"^#++\s*+(\S(?:[^\n]*\S)?)\s*$", re.MULTILINE)

RELATIONS = (
    "colleague", "neighbour", "customer", "supplier", "patient", "student", "mentor", "sibling",
    "friend", "landlord", "tenant", "teammate", "manager", "apprentice", "rival", "client",
    "parent", "child", "partner", "volunteer", "competitor", "critic", "fan", "regulator",
)
_ROLES = (
    "retired schoolteacher", "delivery driver", "community nurse", "market stall owner",
    "graduate student", "plumber", "bus mechanic", "claims adjuster", "youth football coach",
    "pharmacist", "freelance illustrator", "warehouse supervisor", "beekeeper", "paralegal",
    "sound engineer", "librarian", "dairy farmer", "translator", "night-shift security guard",
    "bakery apprentice", "ferry deckhand", "city planner", "hospice chaplain", "data clerk",
    "tattoo artist", "tax accountant", "river ecologist", "forklift operator", "radio host",
    "hotel receptionist", "carpenter", "physiotherapist", "game designer", "court interpreter",
)
_PLACES = (
    "a coastal town", "a mountain village", "the old mill district", "a busy ring-road suburb",
    "a university quarter", "a farming valley", "a port city", "a rust-belt city",
    "a fast-growing exurb", "an island ferry stop", "a border town", "a historic market town",
)
_ACTIVITIES = (
    "keeps a notebook of", "argues online about", "saves up for", "volunteers at events about",
    "teaches evening classes on", "collects stories about", "repairs things related to",
    "writes a small newsletter on", "campaigns on", "quietly worries about", "budgets carefully for",
    "organises meetups about",
)
_REQUESTS = (
    "Can you help me {verb} {obj}{ctx}?",
    "Please {verb} {obj}{ctx}, step by step.",
    "I need to {verb} {obj}{ctx}. Where should I start?",
    "Draft a short plan to {verb} {obj}{ctx}.",
    "Explain how I could {verb} {obj}{ctx}, with one concrete example.",
    "What is the cheapest way to {verb} {obj}{ctx}?",
    "Give me a checklist to {verb} {obj}{ctx}.",
    "Compare two options to {verb} {obj}{ctx} and recommend one.",
)
_VERBS = (
    "organise", "explain", "budget for", "compare", "schedule", "track", "improve", "plan",
    "summarise", "fix", "design", "estimate", "teach", "automate", "document", "negotiate",
)
_LINES = (
    "{greet} {name}, have you heard anything more about {topic}?",
    "{greet} {name}. I keep thinking about {topic}; {opinion}",
    "Listen, {name}: {opinion} And {topic} won't sort itself out.",
    "{greet}! If you see anyone dealing with {topic}, send them my way.",
    "{name}, about {topic}: {opinion}",
    "{greet} {name}. Between {topic} and {topic2}, it's been a week.",
)
_REPLIES = (
    "You mentioned {heard}; {opinion}",
    "About what you said on {heard}: {opinion}",
    "I've been turning over your point on {heard}. {opinion}",
)
_OPINIONS = (
    "I think we should ask around before deciding.",
    "honestly, I'm not convinced it helps people like us.",
    "it could work if someone keeps an eye on the costs.",
    "I'd rather wait and see what the others say.",
    "we tried something like it years ago and it went badly.",
    "it's the best news I've heard in a while.",
    "I need to see the numbers first.",
    "my family is split on it.",
)
_GREETS = ("Morning", "Hey", "Evening", "Hello", "Well met", "Hi there", "Good day")
_DEPENDS = (
    "requests", "pandas", "numpy", "sqlite3", "OpenStreetMap API", "datetime", "matplotlib",
    "scikit-learn", "a weather API", "a public transit API", "geopy", "beautifulsoup4",
)


@dataclass
class PromptContext:
    """A prompt's content words by section, in first-seen order."""

    persona: list[str] = field(default_factory=list)
    world: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    source_text: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    persona_text: str = ""
    neighbour_names: list[str] = field(default_factory=list)

    def pool(self) -> list[str]:
        """Words to draw from, persona first so it dominates what is written."""
        words = self.persona + self.heard + self.events + self.world + self.other
        return words or ["everyday", "matters"]


_WORD_FIELDS = ("persona", "world", "events", "heard", "source_text", "other")


def _section_matches(text: str) -> list[re.Match[str]]:
    """Section heading matches, tried only where a heading can start (a leading ^ gives the regex engine no
    literal prefix).
    """
    matches: list[re.Match[str]] = []
    resume = 0
    start = 0 if text.startswith("#") else -1
    while True:
        if start >= resume and (match := _heading_at(text, start)) is not None:
            matches.append(match)
            resume = match.end()
        found = text.find("\n#", start + 1)
        if found == -1:
            return matches
        start = found + 1


def _heading_at(text: str, start: int) -> re.Match[str] | None:
    # the fast pattern matches as the full one except at the text's end, where the full one decides
    return _FAST_SECTION.match(text, start) or _SECTION.match(text, start)


def split_sections(text: str) -> dict[str, str]:
    """Map a prompt's markdown sections to their bodies (lower-case keys)."""
    sections: dict[str, str] = {}
    heading, body_start = "", 0
    for match in _section_matches(text):
        sections[heading] = text[body_start : match.start()]
        heading, body_start = match.group(1).lower(), match.end()
    if not sections:
        return {"": text}
    sections[heading] = text[body_start:]
    return sections


@lru_cache(maxsize=256)
def _field_for(heading: str) -> str:
    """Return the context field a section feeds (cached)."""
    if heading.startswith("persona") or heading == "you":
        return "persona"
    if heading.startswith("world") or heading.startswith("setting"):
        return "world"
    if heading.startswith("event"):
        return "events"
    if heading == "text":
        return "source_text"
    if heading.startswith(("messages", "inbox", "conversation", "heard")):
        return "heard"
    if heading.startswith(("neighbour", "neighbor", "addressee", "talking to")):
        return "neighbour_names"
    return "other"


def _text_of(content: str | Iterable[object]) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


def read_context(messages: list[Mapping[str, Any]]) -> PromptContext:
    """Build a prompt context from chat messages with markdown sections."""
    found: dict[str, list[tuple[str, ...]]] = {name: [] for name in _WORD_FIELDS}
    names: list[str] = []
    persona_text = ""
    for message in messages:
        system = message.get("role") == "system"
        for heading, body in split_sections(_text_of(message.get("content") or "")).items():
            if heading == "" and system:
                continue
            field_name = _field_for(heading)
            words = cached_keywords(body, 40)
            if field_name == "neighbour_names":
                names += [w.capitalize() for w in words[:3]]
                continue
            found[field_name].append(words)
            if field_name == "persona" and not persona_text:
                persona_text = " ".join(body.split())
    unique = {name: _distinct(parts) for name, parts in found.items()}
    return PromptContext(**unique, persona_text=persona_text, neighbour_names=names)


def _distinct(parts: list[tuple[str, ...]]) -> list[str]:
    if len(parts) == 1:
        return list(parts[0])
    return list(dict.fromkeys(chain.from_iterable(parts)))


class TextMaker:
    """Writes field values from a prompt context with one seeded RNG."""

    def __init__(self, ctx: PromptContext, rng: random.Random,
                 writers: FieldWriters | None = None) -> None:
        self.ctx = ctx
        self.rng = rng
        self.writers = writers  # output kinds' writers for their own field names, read per field
        # a problem beside a question field leaves the question to it
        self.fields: frozenset[str] = frozenset()
        self._question = ""

    def words(self, n: int, pool: list[str] | None = None) -> list[str]:
        pool = pool or self.ctx.pool()
        k = min(n, len(pool))
        head = pool[: max(k * 3, 8)]
        return self.rng.sample(head, min(k, len(head)))

    def topic(self) -> str:
        pool = self.ctx.persona or self.ctx.pool()
        return " ".join(self.words(self.rng.choice((2, 2, 3)), pool))

    def identifier(self) -> str:
        verb = self.rng.choice(("get", "find", "calc", "plan", "track", "list", "score", "check"))
        parts = [re.sub(r"[^a-z0-9]", "", w) for w in self.words(2)]
        ident = "_".join([verb, *[p for p in parts if p]])
        return ident if ident.isidentifier() else "get_info"

    def title(self) -> str:
        noun = self.rng.choice(("Planner", "Tracker", "Lookup", "Estimator", "Finder", "Assistant"))
        return " ".join(w.capitalize() for w in self.words(2)) + " " + noun

    def persona(self, relation: str | None) -> str:
        role = self.rng.choice(_ROLES)
        place = self.rng.choice(_PLACES)
        activity = self.rng.choice(_ACTIVITIES)
        if self.ctx.source_text and not self.ctx.persona:
            # text-to-persona: someone defined by the text's subject
            subject = " ".join(self.words(3, self.ctx.source_text))
            detail = " ".join(self.words(2, self.ctx.source_text))
            return f"A {role} from {place} who {activity} {subject}, especially {detail}."
        relation = relation or self.rng.choice(RELATIONS)
        anchor = " ".join(self.words(2, self.ctx.persona or self.ctx.pool()))
        interest = " ".join(self.words(2, self.ctx.world + self.ctx.persona or self.ctx.pool()))
        return (
            f"A {role} from {place}, the {relation} of someone known for {anchor}, "
            f"who {activity} {interest}."
        )

    def request(self) -> str:
        template = self.rng.choice(_REQUESTS)
        ctx_words = self.ctx.events or self.ctx.heard or self.ctx.world
        extra = f" given {' '.join(self.words(2, ctx_words))}" if ctx_words else ""
        return template.format(verb=self.rng.choice(_VERBS), obj=self.topic(), ctx=extra)

    def spoken_line(self) -> str:
        name = self.rng.choice(self.ctx.neighbour_names or ["friend", "neighbour"])
        opinion = self.rng.choice(_OPINIONS)
        if self.ctx.heard and self.rng.random() < 0.6:
            heard = " ".join(self.words(2, self.ctx.heard))
            return self.rng.choice(_REPLIES).format(heard=heard, opinion=opinion)
        topics = self.ctx.events or self.ctx.world or self.ctx.persona or self.ctx.pool()
        return self.rng.choice(_LINES).format(
            greet=self.rng.choice(_GREETS),
            name=name,
            topic=" ".join(self.words(2, topics)),
            topic2=" ".join(self.words(1, self.ctx.persona or topics)),
            opinion=opinion,
        )

    def description(self) -> str:
        subject = self.topic()
        detail = " ".join(self.words(3))
        return self.rng.choice(
            (
                f"Looks up {subject} and reports {detail} in a short summary.",
                f"Helps with {subject}, taking {detail} into account.",
                f"A practical take on {subject}, covering {detail}.",
                f"Covers {subject} for readers who care about {detail}.",
            )
        )

    def problem(self) -> str:
        """Return a word problem with numbers from the prompt's words, without the question when the schema
        asks it apart.
        """
        a, b, c = self.rng.randint(3, 40), self.rng.randint(2, 12), self.rng.randint(5, 95)
        subject, other = self.topic(), " ".join(self.words(2))
        facts, question = self.rng.choice((
            (f"A project on {subject} needs {a} units of {other}, each costing {b} coins, plus a "
             f"fixed fee of {c}.",
             f"If the budget grows by {b}% a year, after how many years does it cover the total?"),
            (f"Three people share the work on {subject}. The first finishes {a} tasks in {b} "
             f"hours, the second is twice as fast, the third does {c} tasks a day.",
             f"Who handles {other}, given that no two of them work on the same day?"),
            (f"In a study of {subject}, {a}% of {c} cases involve {other}. Of those, {b} are "
             "excluded.",
             "What share of the original cases remains, and is it above one third?"),
        ))
        if "question" in self.fields:
            self._question = question
            return facts
        return f"{facts} {question}"

    def question(self) -> str:
        question, self._question = self._question, ""
        return question or self.request()

    def solution(self) -> str:
        return (f"Step 1: list what is known about {self.topic()}. Step 2: set up the relation "
                f"between {' and '.join(self.words(2))}. Step 3: solve and check the result.")

    def sentence(self) -> str:
        return f"{self.topic().capitalize()}: " + " ".join(self.words(self.rng.randint(4, 8))) + "."

    def relation(self) -> str:
        return self.rng.choice(RELATIONS)

    def arguments(self) -> str:
        return ", ".join(dict.fromkeys(re.sub(r"[^a-z]", "", w) or "value" for w in self.words(2)))

    def returns(self) -> str:
        return f"a list of {' '.join(self.words(2))} records with their {self.words(1)[0]}"

    def dependencies(self) -> str:
        return self.rng.choice(_DEPENDS)

    def argument_name(self) -> str:
        """Return a lower-case identifier from the prompt's words."""
        return re.sub(r"[^a-z]", "", self.words(1)[0].lower()) or "value"

    def answer(self) -> str:
        return str(self.rng.randint(2, 500))

    def assistant_reply(self) -> str:
        return f"Here is how I would approach it: {self.description()}"

    def string_for(self, name: str, siblings: Mapping[str, Any]) -> str:
        """Return a string value for a named field (filled siblings may steer it)."""
        writer = writer_for(name, self.writers)
        if writer.__class__ is not str:
            return writer(self)  # type: ignore[operator]
        relation = siblings.get("relation") or siblings.get("relationship")
        if writer == "persona" or (writer == "description" and relation):
            return self.persona(relation)
        return getattr(self, writer)()
