"""The prompt section format shared by every prompt and the offline engine.

Prompts are built of ``## Title`` blocks; the offline engine finds a prompt's persona, task and
context by the same headings, so the format is a contract and lives below both.
"""

from __future__ import annotations


def section(title: str, body: str) -> str:
    """One ``## Title`` block of a prompt."""
    return f"## {title}\n{body.strip()}\n"
