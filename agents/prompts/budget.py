"""Prompt budgets: count prompt tokens cheaply and trim an agent's context to fit.

A field run against a small instruction model (SmolLM2-135M: 8k context, tens of tokens/s) found
agent prompts of ~1,000 tokens, against ~50 for a Persona Hub prompt: most of it world text and
memory that a small model cannot use, paid for on every call. A ``PromptBudget`` caps the whole
prompt and each variable part (world, events, inbox, memory); the system text, the persona and
the task or question are never cut (nor is an addressee, shown by its first words anyway).

Trimming keeps what matters for this step: the newest events and messages; the memory items that
share most words with this step's events and messages, then the newest; for the world, a summary
(its opening paragraph, then each section's lead sentences, breadth first) that is the same for
every agent, task and step, so the prompts of a run share it as a cacheable prefix. It is a pure
function of its inputs (no RNG, no clock, and the same approximate counter on every machine, never
a tokenizer that may or may not be installed), so seeded runs stay identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, NamedTuple

from personahub.core.errors import PersonahubError
from personahub.core.sections import section
from personahub.models.offline import approx_tokens
from personahub.models.offline_text import keywords

PARTS = ("world", "events", "inbox", "memory")
STEM = 5  # words compare by their first letters: flood, floods, flooding
ELLIPSIS = "…"
RELEVANCE_WEIGHT = 2.0  # of a memory item's relevance against its recency (both 0..1)


class PromptBudgetError(PersonahubError):
    """A prompt budget value is invalid (the message names the field)."""


@dataclass(frozen=True, kw_only=True)
class PromptBudget:
    """Approximate tokens (4 characters each) an agent prompt may spend; None means no limit.

    Attributes:
        total: the whole prompt (system and user text; a schema a server needs comes on top).
        world: the world text (whole if it fits, else its summary: the opening paragraph,
            then each section's first sentences).
        events: this step's events (newest first).
        inbox: messages received (newest first).
        memory: what the agent remembers and its own recent output (most relevant, then newest).
    The defaults fit small instruction models: about 270 tokens at step 1 of the default
    scenario, at most 400 once memory and messages fill.
    """

    total: int | None = 400
    world: int | None = 160
    events: int | None = 50
    inbox: int | None = 90
    memory: int | None = 70

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            low = 1 if spec.name == "total" else 0
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < low):
                raise PromptBudgetError(f"prompt_budget.{spec.name} must be a whole number of "
                                        f"tokens >= {low}, or None for no limit; got {value!r}")

    @classmethod
    def unlimited(cls) -> PromptBudget:
        """No limit anywhere: every part in full (what prompts were before budgets)."""
        return cls(total=None, world=None, events=None, inbox=None, memory=None)

    def cap(self, part: str) -> int | None:
        """The cap of one part (``world``, ``events``, ``inbox`` or ``memory``)."""
        cap: int | None = getattr(self, part)
        return cap


DEFAULT_BUDGET = PromptBudget()


# -- counting --------------------------------------------------------------------------------
def count_tokens(text: str) -> int:
    """Approximate tokens of ``text``: the offline engine's 4 characters a token (0 for '')."""
    return approx_tokens(text) if text else 0


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """Approximate prompt tokens of a message list (LangChain messages or role/content dicts)."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else message.content
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        total += count_tokens(str(content or ""))
    return total


def part_tokens(text: str) -> int:
    """Tokens a prompt part costs, with the newline that joins it to the next part.

    Parts are counted one by one and rounded up, so their sum never falls below the count of
    the joined prompt: parts within budget make a prompt within budget.
    """
    return count_tokens(text + "\n") if text else 0


# -- one part: items kept in order of preference, shown in their own order ------------------
class Item(NamedTuple):
    """One line (or paragraph) of a part, and the ``## heading`` it is shown under."""

    heading: str
    text: str


@dataclass(frozen=True)
class Part:
    """A trimmable part of a prompt: ``items`` in display order, ``order`` most wanted first."""

    items: tuple[Item, ...]
    order: tuple[int, ...]
    sep: str = "\n"

    def render(self, chosen: Sequence[int], items: Sequence[Item] | None = None) -> str:
        """The chosen items (indices, in display order) as ``## heading`` sections ('' if none)."""
        items = self.items if items is None else items
        groups: dict[str, list[str]] = {}
        for i in chosen:
            groups.setdefault(items[i].heading, []).append(items[i].text)
        return "\n".join(section(h, self.sep.join(lines)) for h, lines in groups.items())


def fit(part: Part, cap: int | None) -> str:
    """The part's text within ``cap`` tokens: items taken greedily in order of preference.

    An item that does not fit is skipped (a shorter, less wanted one may still fit); when even
    the most wanted item alone is too long, its head is kept, cut at a word.
    """
    if cap is None:
        return part.render(range(len(part.items)))
    items = list(part.items)
    chosen: list[int] = []
    for rank, i in enumerate(part.order):
        trial = sorted([*chosen, i])
        if part_tokens(part.render(trial, items)) <= cap:
            chosen = trial
        elif rank == 0:
            clipped = _clip_item(part, items, i, cap)
            if clipped is not None:
                items[i] = clipped
                chosen = [i]
    return part.render(chosen, items)


def _clip_item(part: Part, items: list[Item], i: int, cap: int) -> Item | None:
    """Item ``i`` cut so that it alone fits ``cap`` (None when not even a few words fit)."""
    probe = [*items[:i], items[i]._replace(text="x"), *items[i + 1 :]]
    overhead = len(part.render([i], probe)) - 1
    room = 4 * cap - 1 - overhead  # a part of n characters costs ceil((n + 1) / 4) tokens
    while room >= 12:
        item = items[i]._replace(text=clip_text(items[i].text, room))
        if part_tokens(part.render([i], [*items[:i], item, *items[i + 1 :]])) <= cap:
            return item
        room -= 4
    return None


def clip_text(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters at a word boundary, marked with '…'."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    head = text[: max(max_chars - len(ELLIPSIS), 0)]
    cut = head.rfind(" ")
    if cut > len(head) // 2:
        head = head[:cut]
    return head.rstrip(" ,;:.-") + ELLIPSIS


# -- ranking ---------------------------------------------------------------------------------
def stems(text: str) -> frozenset[str]:
    """Content words of ``text``, compared by their first letters (a cheap, fixed stemmer)."""
    return frozenset(word[:STEM] for word in keywords(text, 200))


def newest_first(n: int) -> tuple[int, ...]:
    """Preference order of ``n`` chronological items: the newest first."""
    return tuple(range(n - 1, -1, -1))


def relevance_recency(texts: Sequence[str], query: frozenset[str],
                      offset: int = 0) -> list[tuple[float, int, int]]:
    """Sort keys of chronological ``texts`` (index ``offset`` on): best first when sorted.

    The score is twice the relevance, the share of a text's words found in ``query`` (0..1),
    plus the recency, ``1 / (1 + age)`` with age 0 for the newest text: an old item with half
    its words about this step beats any item with none, and among equally relevant items (all
    of them, when the step brings no events or messages) the newer wins.
    """
    n = len(texts)
    keys = []
    for i, text in enumerate(texts):
        words = stems(text)
        relevance = len(words & query) / len(words) if words else 0.0
        keys.append((-(RELEVANCE_WEIGHT * relevance + 1.0 / (n - i)), n - 1 - i, offset + i))
    return keys


# -- the world -------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def world_units(world: str) -> tuple[str, ...]:
    """The world text as units to keep or drop: paragraphs, and each item of a list.

    Markdown headings become ``Title:`` lines (so they stay inside the ``## World`` section) and
    join the unit that follows them.
    """
    units: list[str] = []
    heading = ""
    for block in _blocks(world):
        lines = block.splitlines()
        if len(lines) == 1 and lines[0].lstrip().startswith("#"):
            heading += lines[0].lstrip().lstrip("#").strip() + ":\n"
            continue
        for unit in _list_items(lines) or ["\n".join(_flat(line) for line in lines)]:
            units.append(heading + unit)
            heading = ""
    if heading:
        units.append(heading.strip())
    return tuple(units)


def _blocks(text: str) -> list[str]:
    blocks, current = [], []
    for line in text.strip().splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _flat(line: str) -> str:
    stripped = line.lstrip()
    return stripped.lstrip("#").strip() + ":" if stripped.startswith("#") else line


def _list_items(lines: list[str]) -> list[str]:
    """The items of a block that is a list (continuation lines join their item), else []."""
    if not lines[0].lstrip().startswith(("- ", "* ")):
        return []
    items: list[str] = []
    for line in lines:
        if line.lstrip().startswith(("- ", "* ")) or not items:
            items.append(line.strip())
        else:
            items[-1] += "\n" + line
    return items


def world_part(world: str) -> Part:
    """The world as a part: every unit, in its own order (what an unlimited cap shows)."""
    units = world_units(world)
    return Part(tuple(Item("World", u) for u in units), tuple(range(len(units))), sep="\n\n")


@lru_cache(maxsize=64)
def fit_world(world: str, cap: int | None) -> str:
    """The ``## World`` section within ``cap``: the whole world when it fits, else its summary.

    It depends on the world and the cap only (never on the agent, its task or the step), so
    every prompt of a run carries the same world text right after the system message and a
    server's prefix cache holds it once.
    """
    if not world.strip():
        return ""
    whole = fit(world_part(world), None)
    if cap is None or part_tokens(whole) <= cap:
        return whole
    return world_summary(world, cap)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(£$€])")
SHORT_SENTENCE = 4  # words: a lead-in such as "The mill." joins the sentence after it


def sentences(text: str) -> list[str]:
    """``text`` as sentences (markdown emphasis dropped; lead-ins joined to what follows)."""
    flat = " ".join(text.replace("**", "").replace("__", "").split())
    out: list[str] = []
    carry = ""
    for piece in _SENTENCE_END.split(flat):
        piece = f"{carry} {piece}".strip() if carry else piece
        carry = piece if len(piece.split()) < SHORT_SENTENCE else ""
        if not carry:
            out.append(piece)
    if carry:
        out.append(carry)
    return out


class _Piece(NamedTuple):
    level: int
    unit: int
    nth: int  # the sentence's place in its unit
    text: str


def _summary_pieces(world: str) -> list[_Piece]:
    """Every sentence of the world with the level it enters a summary at (lower first).

    The opening unit (the world file's own summary) comes whole at level 0; then, breadth
    first, each section's first sentence (under its title), the first sentence of each
    section's second unit (a list item or paragraph), then of its third unit or the second
    sentence of its first, and so on (level ``1 + unit in section + 2 * sentence``), in the
    file's order within a level: a tight cap keeps the outline of every section, a looser one
    fills in details.
    """
    pieces = []
    in_section = 0
    for u, unit in enumerate(world_units(world)):
        title, body = ("", unit)
        first_line, _, rest = unit.partition("\n")
        if first_line.endswith(":") and rest:
            listed = rest.lstrip().startswith(("- ", "* "))
            title, body = first_line + ("\n" if listed else " "), rest
            in_section = 0
        for j, sentence in enumerate(sentences(body)):
            level = 0 if u == 0 else 1 + in_section + 2 * j
            pieces.append(_Piece(level, u, j, (title if j == 0 else "") + sentence))
        in_section += 1
    return pieces


@lru_cache(maxsize=64)
def world_summary(world: str, cap: int) -> str:
    """The ``## World`` section summarised within ``cap`` tokens.

    Sentences enter by level (``_summary_pieces``), one unit's sentences in their order; a
    sentence that does not fit is skipped and a shorter one later may still fit. Units are
    shown one a line, in the file's order.
    """
    chosen: dict[int, list[str]] = {}
    for piece in sorted(_summary_pieces(world)):
        have = chosen.get(piece.unit, [])
        if len(have) != piece.nth:
            continue  # the sentence before it in its unit was left out
        trial = {**chosen, piece.unit: [*have, piece.text]}
        if part_tokens(_render_summary(trial)) <= cap:
            chosen = trial
    if not chosen:  # not one sentence fits: the opening's head, cut at a word
        return fit(world_part(world), cap)
    return _render_summary(chosen)


def _render_summary(chosen: Mapping[int, list[str]]) -> str:
    return section("World", "\n".join(" ".join(chosen[u]) for u in sorted(chosen)))


# -- the whole context -----------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """What an agent prompt may show besides its fixed text, untrimmed (chronological lists)."""

    world: str = ""
    events: Sequence[str] = ()
    inbox: Sequence[tuple[str, str]] = ()  # (sender persona, text)
    memory: Sequence[str] = ()
    recent: Sequence[str] = ()


SENDER_CHARS = 60
RECENT_CHARS = 200


def context_parts(ctx: Context, memory_query: str) -> dict[str, Part]:
    """The events, inbox and memory parts of ``ctx`` with their preference orders."""
    heard = tuple(Item("Messages received", f"- from {clip_text(s, SENDER_CHARS)}: {t}")
                  for s, t in ctx.inbox)
    remembered = [Item("Memory", f"- {m}") for m in ctx.memory]
    remembered += [Item("Your recent output", f"- {clip_text(r, RECENT_CHARS)}")
                   for r in ctx.recent]
    wanted = stems(memory_query)  # memory lines and own outputs each age on their own
    keys = relevance_recency(ctx.memory, wanted) + relevance_recency(ctx.recent, wanted,
                                                                     len(ctx.memory))
    return {
        "events": Part(tuple(Item("Events", f"- {e}") for e in ctx.events),
                       newest_first(len(ctx.events))),
        "inbox": Part(heard, newest_first(len(heard))),
        "memory": Part(tuple(remembered), tuple(i for *_, i in sorted(keys))),
    }


def fit_context(ctx: Context, budget: PromptBudget, *, fixed: int,
                memory_query: str) -> dict[str, str]:
    """Each part's text (``world``, ``events``, ``inbox``, ``memory``; '' when empty).

    ``fixed`` is what the prompt spends whatever happens (system, persona, task). The shared
    parts come first, the most shared first, so that every agent of a run gets the same world
    and every agent of a step the same events (a server's prefix cache holds them once): the
    world, then the events, each within its cap; inbox and memory then share what is left
    evenly, each within its cap.
    """
    parts = context_parts(ctx, memory_query)
    room = None if budget.total is None else budget.total - fixed
    texts = {"world": fit_world(ctx.world, _least(budget.world, room))}
    room = _spend(room, texts["world"])
    texts["events"] = fit(parts["events"], _least(budget.events, room))
    room = _spend(room, texts["events"])
    wants = {name: fit(parts[name], budget.cap(name)) for name in ("inbox", "memory")}
    if room is None:
        return {**texts, **wants}
    shares = share_evenly({name: part_tokens(text) for name, text in wants.items()}, room)
    for name, text in wants.items():
        texts[name] = text if part_tokens(text) <= shares[name] else fit(parts[name], shares[name])
    return texts


def _least(cap: int | None, room: int | None) -> int | None:
    if room is None:
        return cap
    return max(room, 0) if cap is None else max(min(cap, room), 0)


def _spend(room: int | None, text: str) -> int | None:
    return None if room is None else room - part_tokens(text)


def share_evenly(wants: Mapping[str, int], room: int) -> dict[str, int]:
    """Split ``room`` tokens: each gets what it wants or an even share, the smallest first.

    What a small part does not need goes to the larger ones (water-filling), so a short inbox
    leaves memory its full cap.
    """
    shares: dict[str, int] = {}
    left = sorted(wants, key=lambda name: (wants[name], name))
    room = max(room, 0)
    while left:
        name = left.pop(0)
        shares[name] = min(wants[name], room // (len(left) + 1))
        room -= shares[name]
    return shares

