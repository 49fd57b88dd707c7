"""Reflections: a short summary an agent writes, in its own voice, of what it remembers.

Not a registered task: a reflection is not an emission; it replaces the keyword summary in the
agent's memory.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# the system text is every in-character call's (agents/prompts/agent.py, AGENT_SYSTEM)
REFLECTION_TASK = ("Think back on what you remember. In two or three sentences, in the first "
                   "person, sum up what matters to you "
                   "in all this: what happened, who said what, what you think now.")


class Reflection(BaseModel):
    """A reflection: what the agent keeps of its memories, in its own words."""

    summary: str = Field(min_length=1, description="two or three sentences, first person")
