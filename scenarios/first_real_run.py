"""A first run against a real model: four residents of the river town, one hop, two steps, a survey.

Small on purpose: a local model answering one request at a time finishes it in a minute or two.
Run it with:

    personahub run scenarios/first_real_run.py --llm "http://127.0.0.1:8812/v1?model=NAME"
"""

from personahub.cli import main
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey

SCENARIO = Scenario(
    name="first_real_run",
    description="Four river-town residents and the people close to them, two steps.",
    personas=PersonaSource(limit=4),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=2),
    steps=2,
    tasks=("instruction", "npc_dialogue", "tool_spec"),
    world_file="worlds/riverside_town.md",
    events={2: ("Heavy rain is forecast; the ferry may stop running tomorrow.",)},
    surveys=(Survey(id="ferry_worry", question="How worried are you about the ferry stopping?",
                    steps=(2,), answer="scale", low=1, high=5),),
    seed=7,
)

if __name__ == "__main__":
    main(__file__)
