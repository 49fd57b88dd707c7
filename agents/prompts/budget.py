"""Prompt budgets: count prompt tokens cheaply and trim an agent's context to fit.

A field run with SmolLM2-135M found agent prompts of ~1,000 tokens (a Persona Hub prompt is ~50),
mostly world text and memory a small model cannot use. A budget caps the whole prompt and each
variable part; system text, persona and task are never cut. Trimming is a pure function with a
fixed approximate token counter (not an optional tokenizer), so seeded runs stay identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, NamedTuple

from personahub.core.errors import PersonahubError
from personahub.core.sections import section, with_last_paragraph
from personahub.core.text_measures import approx_tokens, keywords

PARTS = ("world", "events", "inbox", "memory")
STEM = 5  # words compare by their first letters: flood, floods, flooding
ELLIPSIS = "…"
RELEVANCE_WEIGHT = 2.0  # of a memory item's relevance against its recency (both 0..1)


class PromptBudgetError(PersonahubError):
    """A prompt budget value is invalid."""


@dataclass(frozen=True, kw_only=True)
class PromptBudget:
    """Approximate tokens (4 characters each) an agent prompt may spend; None means no limit.

    Attributes:
        total: the whole prompt (a schema the server needs, and an experiment arm's world
            text, come on top).
        world: the world text, whole if it fits, else its summary.
        events: this step's events, newest first.
        inbox: messages received, newest first.
        memory: memory and recent output, most relevant first.
    The defaults fit small instruction models: about 270 tokens at step 1, at most 400 later.
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
        return cls(total=None, world=None, events=None, inbox=None, memory=None)

    def cap(self, part: str) -> int | None:
        cap: int | None = getattr(self, part)
        return cap


DEFAULT_BUDGET = PromptBudget()


def count_tokens(text: str) -> int:
    """Return approximate tokens of text: 4 characters a token, like the offline engine."""
    return approx_tokens(text) if text else 0


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """Return approximate prompt tokens of LangChain messages or role/content dicts."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else message.content
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        total += count_tokens(str(content or ""))
    return total


def part_tokens(text: str) -> int:
    """Return the tokens a prompt part costs, with its joining newline.

    Rounding each part up keeps the sum of parts at or above the joined prompt's count.
    """
    return count_tokens(text + "\n") if text else 0


class Item(NamedTuple):
    """One line or paragraph of a part, and the heading it is shown under."""

    heading: str
    text: str


@dataclass(frozen=True)
class Part:
    """A trimmable part of a prompt: items in display order, order most wanted first."""

    items: tuple[Item, ...]
    order: tuple[int, ...]
    sep: str = "\n"

    def render(self, chosen: Sequence[int], items: Sequence[Item] | None = None) -> str:
        items = self.items if items is None else items
        groups: dict[str, list[str]] = {}
        for i in chosen:
            groups.setdefault(items[i].heading, []).append(items[i].text)
        return "\n".join(section(h, self.sep.join(lines)) for h, lines in groups.items())


def fit(part: Part, cap: int | None) -> str:
    """Return the part's text within cap tokens, taking items greedily by preference.

    An item that does not fit is skipped; if even the first alone is too long, its head is kept.
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
    """Return item i cut to fit cap alone, or None when not even a few words fit."""
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
    """Cut text to at most max_chars at a word boundary, marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    head = text[: max(max_chars - len(ELLIPSIS), 0)]
    cut = head.rfind(" ")
    if cut > len(head) // 2:
        head = head[:cut]
    return head.rstrip(" ,;:.-") + ELLIPSIS


def stems(text: str) -> frozenset[str]:
    """Return the content words of text, compared by their first letters (a cheap stemmer)."""
    return frozenset(word[:STEM] for word in keywords(text, 200))


def newest_first(n: int) -> tuple[int, ...]:
    return tuple(range(n - 1, -1, -1))


def relevance_recency(texts: Sequence[str], query: frozenset[str],
                      offset: int = 0) -> list[tuple[float, int, int]]:
    """Return sort keys for chronological texts, best first when sorted.

    Score: twice the share of a text's words found in query, plus 1 / (1 + age). An old item half
    about this step beats any unrelated one; among equals the newer wins.
    """
    n = len(texts)
    keys = []
    for i, text in enumerate(texts):
        words = stems(text)
        relevance = len(words & query) / len(words) if words else 0.0
        keys.append((-(RELEVANCE_WEIGHT * relevance + 1.0 / (n - i)), n - 1 - i, offset + i))
    return keys


@lru_cache(maxsize=64)
def world_units(world: str) -> tuple[str, ...]:
    """Split the world text into units to keep or drop: paragraphs and list items.

    Markdown headings become "Title:" lines joined to the unit that follows.
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
    units = world_units(world)
    return Part(tuple(Item("World", u) for u in units), tuple(range(len(units))), sep="\n\n")


@lru_cache(maxsize=64)
def fit_world(world: str, cap: int | None) -> str:
    """Return the World section within cap: the whole world if it fits, else its summary.

    It depends only on the world and the cap, so every prompt of a run shares it as a cacheable prefix.
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
    """Split text into sentences, dropping emphasis and joining short lead-ins to what follows."""
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
    """Return every world sentence with the level it enters a summary at (lower first).

    The opening unit comes whole at level 0; then, breadth first, each section's first sentence,
    then later units and sentences. A tight cap keeps every section's outline; a looser one adds detail.
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
    """Summarise the World section within cap tokens, taking sentences by level."""
    chosen: dict[int, list[str]] = {}
    for piece in sorted(_summary_pieces(world)):
        have = chosen.get(piece.unit, [])
        if len(have) != piece.nth:
            continue
        trial = {**chosen, piece.unit: [*have, piece.text]}
        if part_tokens(_render_summary(trial)) <= cap:
            chosen = trial
    if not chosen:
        return fit(world_part(world), cap)
    return _render_summary(chosen)


def _render_summary(chosen: Mapping[int, list[str]]) -> str:
    return section("World", "\n".join(" ".join(chosen[u]) for u in sorted(chosen)))


@dataclass(frozen=True)
class Context:
    """What an agent prompt may show besides its fixed text, untrimmed and chronological.

    arm_world is an experiment arm's world text: the World section's last paragraph, shown whole
    and not charged to the budget, so a treated prompt is its control's plus that paragraph.
    """

    world: str = ""
    events: Sequence[str] = ()
    inbox: Sequence[tuple[str, str]] = ()  # (sender persona, text)
    memory: Sequence[str] = ()
    recent: Sequence[str] = ()
    arm_world: str = ""


SENDER_CHARS = 60
RECENT_CHARS = 200


def context_parts(ctx: Context, memory_query: str) -> dict[str, Part]:
    """Return the events, inbox and memory parts with their preference orders."""
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
    """Return each part's trimmed text ('' when empty).

    fixed is what the prompt spends anyway. World then events take their caps first, most shared
    first, so prefix caches can hold them; inbox and memory share the rest evenly. The arm's world
    text is appended to the World section last, whole and uncharged: every other part is trimmed
    as in its control's prompt.
    """
    parts = context_parts(ctx, memory_query)
    room = None if budget.total is None else budget.total - fixed
    texts = {"world": fit_world(ctx.world, _least(budget.world, room))}
    room = _spend(room, texts["world"])
    texts["events"] = fit(parts["events"], _least(budget.events, room))
    room = _spend(room, texts["events"])
    wants = {name: fit(parts[name], budget.cap(name)) for name in ("inbox", "memory")}
    if room is None:
        texts.update(wants)
    else:
        shares = share_evenly({name: part_tokens(text) for name, text in wants.items()}, room)
        for name, text in wants.items():
            texts[name] = (text if part_tokens(text) <= shares[name]
                           else fit(parts[name], shares[name]))
    if ctx.arm_world.strip():
        texts["world"] = with_last_paragraph(texts["world"], "World", ctx.arm_world)
    return texts


def _least(cap: int | None, room: int | None) -> int | None:
    if room is None:
        return cap
    return max(room, 0) if cap is None else max(min(cap, room), 0)


def _spend(room: int | None, text: str) -> int | None:
    return None if room is None else room - part_tokens(text)


def share_evenly(wants: Mapping[str, int], room: int) -> dict[str, int]:
    """Split room tokens: each gets what it wants or an even share, smallest first.

    What a small part does not need goes to the larger ones, so a short inbox leaves memory its cap.
    """
    shares: dict[str, int] = {}
    left = sorted(wants, key=lambda name: (wants[name], name))
    room = max(room, 0)
    while left:
        name = left.pop(0)
        shares[name] = min(wants[name], room // (len(left) + 1))
        room -= shares[name]
    return shares

