"""Where Persona Hub's released tool sample is (``../shared/data`` next to the checkout, which
for a git worktree may sit a level or two further up), and its rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_NAME = "shared/data/personahub_tool_sample.jsonl"


def sample_path() -> Path | None:
    """The sample file in the nearest ancestor of this checkout that has one, or None."""
    for folder in Path(__file__).resolve().parents[1:]:
        if (folder / _NAME).is_file():
            return folder / _NAME
    return None


def require_sample() -> Path:
    """The sample file, or skip the test that needs it."""
    path = sample_path()
    if path is None:
        pytest.skip(f"{_NAME} not present")
    return path


def sample_rows(limit: int | None = None) -> list[dict[str, Any]]:
    """The sample's rows as decoded (the first ``limit``)."""
    with open(require_sample(), encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit or 10**9), f, strict=False)]
