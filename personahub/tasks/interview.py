"""Interview answers: what an agent says when a user asks it a question about a run.

Not a registered task: an interview is asked from an agent's stored state, and its answers go to
their own table, never to emissions or items.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

INTERVIEW_SYSTEM = ("You are the person described under Persona, being interviewed about what "
                    "you have lived through. Stay in character and answer in your own words. "
                    "Answer only with JSON that matches the schema.")


class InterviewAnswer(BaseModel):
    """An interview answer in the persona's own words."""

    reply: str = Field(min_length=1, description="your answer, in your own words, in character")
