"""Default scenario: a river town's residents and the people close to them.

120 of the shipped seed personas, linked as acquaintances and expanded one persona-to-persona
hop, live through six steps of an ordinary week in Millbrook-on-Vale. Each step every resident
writes a prompt for an AI assistant, says a line to a neighbour, or sketches a software tool;
at the last step every resident also answers one survey question on the postponed flood wall.
Run it with either of:

    personahub run scenarios/riverside_town.py
    python scenarios/riverside_town.py
"""

from personahub.cli import main
from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey

SCENARIO = Scenario(
    name="riverside_town",
    description="A week in a river town: prompts, neighbourly talk and tool ideas.",
    personas=PersonaSource(limit=120),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=4),
    steps=6,
    tasks=("instruction", "npc_dialogue", "tool_spec"),
    task_weights=(1.0, 1.5, 1.0),
    world_file="worlds/riverside_town.md",
    events={
        3: ("The council announces that the flood wall vote is postponed by a month.",),
        5: ("Heavy rain is forecast; the ferry may stop running tomorrow.",),
    },
    surveys=(
        Survey(id="flood_wall", steps=(6,),
               question="The flood wall vote was postponed. What should the town do?",
               answer="choice", options=("build the wall now", "wait for the vote",
                                         "spend the money elsewhere")),
    ),
    seed=7,
)

if __name__ == "__main__":
    main(__file__)
