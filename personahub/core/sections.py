"""The markdown-heading prompt section format, shared by every prompt and the offline engine (which
finds a prompt's persona, task and context by these headings).

Sections are joined by a blank line, and a section's paragraphs by one too (PARAGRAPH_BREAK):
``paragraph`` makes a text one paragraph, so a planted answer's marker can be taken out of a
prompt with exactly the paragraph that carries it (models/fake_server/plant.py).
"""

from __future__ import annotations

PARAGRAPH_BREAK = "\n\n"  # between paragraphs; paragraph() keeps it out of one


def section(title: str, body: str) -> str:
    """One titled block of a prompt."""
    return f"## {title}\n{body.strip()}\n"


def paragraph(text: str) -> str:
    """Return text as one paragraph: lines right-stripped, blank lines dropped.

    Args:
        text: any text.

    Returns:
        The text with no PARAGRAPH_BREAK inside it.
    """
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def with_last_paragraph(block: str, title: str, text: str) -> str:
    """Return a section block with text appended as its last paragraph.

    Args:
        block: a section() block, or "" (then the result is a new section of that title).
        title: the section's title, used when block is empty.
        text: the paragraph to append (made one paragraph first).

    Returns:
        The block with PARAGRAPH_BREAK and the paragraph before its closing newline.
    """
    if not block:
        return section(title, paragraph(text))
    return block.rstrip("\n") + PARAGRAPH_BREAK + paragraph(text) + "\n"
