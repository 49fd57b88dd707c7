"""Knowledge text: a titled explainer the persona would write or want to read (emission and
synthesis)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from personahub.models.bounds import SHORT
from personahub.personas.quality import QualityIssue
from personahub.tasks.base import Content, EmissionSpec, SynthesisSpec, Task
from personahub.tasks.validators import (
    MIN_BODY_CHARS,
    MIN_BODY_WORDS,
    MIN_TITLE_CHARS,
    free_text_issue,
    has_letters,
    squash,
)


class KnowledgeText(BaseModel):
    """A knowledge-rich text (an explainer or article) the persona would write or want."""

    title: Annotated[str, SHORT] = Field(min_length=2)
    text: str = Field(min_length=8, description="the body of the text")


def check_knowledge_text(content: Content) -> QualityIssue | None:
    """Check a knowledge text: a title and a body of some length."""
    title = squash(content.get("title"))
    if len(title) < MIN_TITLE_CHARS or not has_letters(title):
        return QualityIssue("no_title", f"the title is under {MIN_TITLE_CHARS} characters")
    return free_text_issue(squash(content.get("text")), "body", MIN_BODY_CHARS, MIN_BODY_WORDS)


TASK = Task(
    name="knowledge_text",
    schema=KnowledgeText,
    check=check_knowledge_text,
    describe=lambda content: f"{content['title']}\n\n{content['text']}",
    description="knowledge-rich text",
    emission=EmissionSpec(
        max_tokens=600,
        prompt="Write a short explainer with a title that this person would write or want to "
               "read."),
    synthesis=SynthesisSpec(
        summary="a knowledge-rich text", max_tokens=700,
        instruction="Write a short knowledge-rich text (an explainer or encyclopedia-style "
                    "article) that this persona knows well or would want to read: accurate, "
                    "specific, well organised. Give it a title."),
    offline_writers={"title": "title", "text": "description"},
)
