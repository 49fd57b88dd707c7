"""An experiment arm's world text in agent prompts: the World section's last paragraph, after the
whole base world, shown whole; every other part of the prompt is its control's."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub.agents.prompts.agent import (
    agent_messages,
    decision_messages,
    interview_messages,
    survey_messages,
)
from personahub.agents.prompts.budget import PromptBudget, count_prompt_tokens
from personahub.core.sections import PARAGRAPH_BREAK

ROOT = Path(__file__).resolve().parents[2]
WORLD = (ROOT / "scenarios" / "worlds" / "product_launch.md").read_text(encoding="utf-8")
ARM = "A competitor cut its price by a fifth.\n\nShops report long queues."
CONTEXT = {"persona": "A commuter who rides to work in all weathers.", "world": WORLD,
           "events": [f"Event {i}: the launch week goes on." for i in range(6)],
           "inbox": [("A neighbour", f"Message {i} about the e-bike.") for i in range(6)],
           "memory": [f"I remember thing {i} about bikes." for i in range(12)]}
BUILDERS = {
    "agent": lambda **kw: agent_messages(kind="instruction", recent=["My last post."], **kw),
    "decision": lambda **kw: decision_messages(options=["instruction"], people=["A baker."],
                                               **kw),
    "survey": lambda **kw: survey_messages(question="Buy it?", answer_hint="yes | no", **kw),
    "interview": lambda **kw: interview_messages(question="How was the week?", **kw),
}
BUDGETS = {"default": PromptBudget(), "tight": PromptBudget(total=260, world=60),
           "unlimited": PromptBudget.unlimited()}


def world_body(content: str) -> tuple[str, str, str]:
    """(before the World section's body, the body, after it) of a user message."""
    head, rest = content.split("## World\n", 1)
    body, after = rest.split("\n\n## ", 1)
    return head + "## World\n", body, "\n\n## " + after


@pytest.mark.parametrize("budget", BUDGETS, ids=str)
@pytest.mark.parametrize("builder", BUILDERS, ids=str)
def test_a_treated_prompt_is_its_controls_plus_the_arm_paragraph_at_the_worlds_end(builder,
                                                                                  budget):
    build = BUILDERS[builder]
    control = build(budget=BUDGETS[budget], **CONTEXT)
    treated = build(budget=BUDGETS[budget], arm_world=ARM, **CONTEXT)
    assert treated[0].content == control[0].content  # the system message
    before, body, after = world_body(str(control[-1].content))
    arm = "A competitor cut its price by a fifth.\nShops report long queues."  # one paragraph
    assert treated[-1].content == before + body + PARAGRAPH_BREAK + arm + after
    # the world file's text is summarised alike, the arm's is shown whole on top of the budget
    assert count_prompt_tokens(treated) > count_prompt_tokens(control)


def test_an_arm_paragraph_with_no_base_world_is_the_world_section():
    control = survey_messages(persona="A baker.", question="Buy it?", answer_hint="yes | no")
    treated = survey_messages(persona="A baker.", question="Buy it?", answer_hint="yes | no",
                              arm_world="  TREATED \n")
    assert "## World" not in str(control[-1].content)
    assert treated[-1].content == "## World\nTREATED\n" + "\n" + str(control[-1].content)
