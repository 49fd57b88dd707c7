"""Developer community: contributors of an open-source orchestrator react to a broken release.

Fifty seed personas (plus one hop) form the community around Ferrule
(worlds/developer_community.md). Each step about two in three of them act: they sketch a
tool (Persona Hub's function-interface shape, never executed), write a prompt they would give an
AI assistant, or pose a reasoning problem about scheduling. The 3.0 release breaks the scheduler
at step 2 (everyone hears), a maintainer's migration guide reaches only their neighbourhood at
step 3, a reviewer is linked to the maintainer and a long-idle link is dropped; at step 4 the
coders and engineers are asked, in free text, what should be fixed first.
"""

from personahub.cli import main
from personahub.sim.scenario import (
    Activation,
    Audience,
    Event,
    GraphGrowth,
    Intervention,
    PersonaSource,
    Scenario,
    Survey,
)

SCENARIO = Scenario(
    name="developer_community",
    description="An open-source community's tools, prompts and puzzles around a broken release.",
    personas=PersonaSource(limit=50),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=4),
    steps=4,
    tasks=("tool_spec", "instruction", "reasoning_problem"),
    task_weights=(2.0, 1.5, 0.5),
    world_file="worlds/developer_community.md",
    activation=Activation(mode="probability", p=0.65),
    events=(
        Event(step=2, text="Ferrule 3.0 is out; within hours users report the scheduler skipping "
                           "retries for jobs with more than one upstream dependency."),
        Event(step=3, text="A maintainer posts a migration guide and a one-line workaround: pin "
                           "the retry policy per job until 3.0.1.",
              audience=Audience(near=3, hops=1)),
    ),
    interventions=(
        Intervention(step=3, action="add_edge", target=3, other=20, relation="reviewer"),
        Intervention(step=3, action="remove_edge", target=1, other=2),
        Intervention(step=3, action="set_persona", target=3,
                     text="A tired core maintainer of Ferrule who wrote the 3.0 scheduler and now "
                          "spends nights triaging retry bugs and answering angry issues."),
    ),
    surveys=(
        Survey(id="fix_first", steps=(4,), answer="text",
               question="What should Ferrule's maintainers fix or improve first, and why?",
               audience=Audience(text_contains=("engineer", "developer", "coder", "programm",
                                                "software", "it ", "tech", "data"))),
    ),
    seed=5,
)

if __name__ == "__main__":
    main(__file__)
