"""What a group of agents saw and remembers, folded into one prompt that speaks for them all.

An archetype's call (a survey's shares, a pooled action) stands for its members, so it is given
their history rather than its representative's alone: the representative may be outside an
event's audience, or in another arm, and one person's memory would hide what the others saw.
Each remembered item is counted over the members read and the most widely held are kept, up to
what one member's prompt shows, so the prompt is no longer than a member's own. Items every
member holds read as plain memory; the others say how many of the members hold them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from personahub.sim.memory import AgentMemory, Recollection, recollection_line

MEMBERS_READ = 100  # members whose memories one call reads (a seeded sample beyond)


@dataclass(frozen=True)
class GroupHistory:
    """One group's history for a prompt: the Events section and the Memory lines."""

    events: list[str]
    memory: list[str]


def _share(count: int, members: int) -> str:
    return f" [{round(100 * count / members)}% of people like you]"


def group_history(memories: Sequence[AgentMemory | None], events: Sequence[Sequence[str]],
                  before_step: int, limit: int) -> GroupHistory:
    """Fold members' memories and this step's events into one prompt's events and memory.

    Args:
        memories: each member's memory (None: it remembers nothing yet).
        events: each member's events of this step, in the same order.
        before_step: the step asked (memory items from before it count, as in a member's prompt).
        limit: the most memory items kept (a member's prompt shows at most this many).

    Returns:
        Events every member saw this step, in order; then the memory lines: the members'
        keyword summary, the most widely held items oldest first, and this step's events only
        some members saw, each not held by all marked with its share of the members.
    """
    n = len(memories)
    if n == 0:
        return GroupHistory([], [])
    counts: dict[Recollection, int] = {}
    terms: dict[str, float] = {}
    summary_terms = 0
    for memory in memories:
        if memory is None:
            continue
        summary_terms = max(summary_terms, memory.summary_terms)
        for word, weight in memory.summary.items():
            terms[word] = terms.get(word, 0.0) + weight
        items = list(memory.recalled(before_step))
        if memory.reflection:
            items.append((memory.reflected_at, "reflection", memory.reflection))
        for item in dict.fromkeys(items):  # once per member
            counts[item] = counts.get(item, 0) + 1
    order = {item: i for i, item in enumerate(counts)}
    kept = sorted(counts, key=lambda item: (-counts[item], -item[0], order[item]))[: max(limit, 0)]
    lines = []
    if terms:
        ranked = sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))[:summary_terms]
        lines.append("Earlier, things about: " + ", ".join(word for word, _ in ranked))
    for item in sorted(kept, key=lambda item: (item[0], order[item])):
        lines.append(recollection_line(item) + (_share(counts[item], n) if counts[item] < n else ""))
    seen: dict[str, int] = {}
    for member_events in events:
        for text in dict.fromkeys(member_events):
            seen[text] = seen.get(text, 0) + 1
    everyone = [text for text, count in seen.items() if count == n]
    some = [f"(step {before_step}) {text}{_share(count, n)}" for text, count in seen.items()
            if count < n]
    return GroupHistory(everyone, lines + some)

