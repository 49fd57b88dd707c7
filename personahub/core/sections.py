"""The markdown-heading prompt section format, shared by every prompt and the offline engine (which
finds a prompt's persona, task and context by these headings).
"""

from __future__ import annotations


def section(title: str, body: str) -> str:
    """One titled block of a prompt."""
    return f"## {title}\n{body.strip()}\n"
