"""Planted answers: the loopback server answering marked prompts otherwise, by a known share.

An experiment's machinery is right only if it finds an effect that is there. A plant answers its
option to that share of survey questions whose prompt holds the (otherwise invisible) marker: on k
options, an expected effect of share times (1 - 1/k).

The marker is invisible because a marked prompt is answered as the prompt without the paragraphs
that hold it, each with the paragraph break before it (core/sections.py). An experiment arm's world
text is the World section's last paragraph, so an arm with ``world="TREATED"`` is answered exactly
as its control, then planted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from personahub.core.errors import UsageError
from personahub.core.sections import PARAGRAPH_BREAK
from personahub.models.offline import (
    EngineReply,
    EngineRequest,
    OfflineEngine,
    approx_tokens,
    pick_tool,
)

__all__ = ["Plant", "PlantedEngine", "parse_plant"]


@dataclass(frozen=True)
class Plant:
    """Answer an option to a share of the questions whose prompt holds a marker."""

    marker: str
    option: str
    share: float

    def __post_init__(self) -> None:
        if not self.marker.strip() or not self.option.strip():
            raise UsageError(f"--plant {self.marker}={self.option}:{self.share}: the marker and "
                             "the option must be non-empty")
        if not 0.0 <= self.share <= 1.0:
            raise UsageError(f"--plant {self.marker}={self.option}:{self.share}: the share must "
                             "be within [0, 1]")


def parse_plant(text: str) -> Plant:
    """Parse a MARKER=OPTION:SHARE value as a plant (a usage error naming the flag otherwise)."""
    marker, equals, rest = text.partition("=")
    option, colon, share = rest.rpartition(":")
    if not equals or not colon:
        raise UsageError(f"--plant {text!r}: give MARKER=OPTION:SHARE (e.g. "
                         "'TREATED=yes:0.4')")
    try:
        value = float(share)
    except ValueError:
        raise UsageError(f"--plant {text!r}: the share {share!r} is not a number") from None
    if value != value:  # NaN
        raise UsageError(f"--plant {text!r}: the share must be within [0, 1]")
    return Plant(marker=marker, option=option, share=value)


def _offered(schema: Mapping[str, Any] | None, option: str) -> tuple[bool, object]:
    """Whether the schema's answer property offers the option (by its text), and its value."""
    if not isinstance(schema, Mapping):
        return False, None
    answer = (schema.get("properties") or {}).get("answer")
    enum = answer.get("enum") if isinstance(answer, Mapping) else None
    for value in enum or ():
        if str(value) == option:
            return True, value
    return False, None


def _unmark(content: object, marker: str) -> object:
    """Return the content without each paragraph holding the marker, nor its paragraph break.

    An arm's world text is the World section's last paragraph (agents/prompts/agent.py), so this
    takes the arm's text out whole and leaves its control's prompt, byte for byte.
    """
    if not isinstance(content, str) or marker not in content:
        return content
    return PARAGRAPH_BREAK.join(p for p in content.split(PARAGRAPH_BREAK) if marker not in p)


def _draw(seed: int, prompt: str) -> float:
    """Return a uniform draw in [0, 1) from the server's seed and the prompt."""
    digest = hashlib.blake2b(f"{seed}/plant/{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


class PlantedEngine(OfflineEngine):
    """The offline engine, with its plants applied to the answers of marked prompts."""

    def __init__(self, seed: int = 0, plants: Sequence[Plant] = ()) -> None:
        super().__init__(seed)
        self.plants = tuple(plants)

    def answer(self, messages: Sequence[Mapping[str, Any]], request: EngineRequest,
               sample: int = 0) -> EngineReply:
        """Return the engine's answer, its answer field replaced when a plant applies."""
        prompt = " ".join(str(m.get("content") or "") for m in messages)
        plant = next((p for p in self.plants if p.marker in prompt), None)
        if plant is None:
            return super().answer(messages, request, sample)
        unmarked = [{**m, "content": _unmark(m.get("content"), plant.marker)} for m in messages]
        reply = super().answer(unmarked, request, sample)
        if _draw(self.seed, plant.marker + "/" + prompt) >= plant.share:
            return reply
        if reply.tool_calls:
            call = reply.tool_calls[0]
            tool = pick_tool(request.tools or (), request.tool_choice)
            offered, value = _offered(tool.get("parameters"), plant.option)
            if not offered or not isinstance(call["args"], dict):
                return reply
            args = {**call["args"], "answer": value}
            return replace(reply, tool_calls=[{**call, "args": args}, *reply.tool_calls[1:]],
                           tokens_out=approx_tokens(json.dumps(args)))
        offered, value = _offered(request.json_schema, plant.option)
        if not offered:
            return reply
        try:
            content = json.loads(reply.content)
        except ValueError:
            return reply
        if not isinstance(content, dict) or "answer" not in content:
            return reply
        text = json.dumps({**content, "answer": value}, ensure_ascii=False)
        return replace(reply, content=text, tokens_out=approx_tokens(text))
