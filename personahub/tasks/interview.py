"""Interview answers: what an agent says when a user asks it a question about a run.

Not a registered task: an interview is asked from an agent's stored state, and its answers go to
their own table, never to emissions or items.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# the system text is every in-character call's (agents/prompts/agent.py, AGENT_SYSTEM)
INTERVIEW_TASK = ("You are being interviewed about what you have lived through. Answer in your own "
                  "words.")


class InterviewAnswer(BaseModel):
    """An interview answer in the persona's own words."""

    reply: str = Field(min_length=1, description="your answer, in your own words, in character")
