"""Fantasy village: game NPCs of Sallowmere talking to their neighbours as the lake sinks.

Forty of the shipped seed personas are recast as villagers of Sallowmere (the lore is in
worlds/fantasy_village.md) and linked, with one persona-to-persona hop, into a village graph.
Each step the villagers who are awake say a line to a neighbour or hold a short conversation with
one; the dialogue threads carry over from step to step. Rumours spread only to the houses near
the mine, the whole village sees the lake fall, a villager joins the Reedwardens (persona
intervention) and two rivals are made to share a watch (a new edge).

Run it, then look at the longest threads:

    personahub run scenarios/fantasy_village.py
    personahub sql "select thread_id, count(*) from messages group by 1 order by 2 desc limit 5"
"""

import random

from personahub.cli import main
from personahub.sim.scenario import (
    Activation,
    AgentInfo,
    Audience,
    Event,
    GraphGrowth,
    Intervention,
    Memory,
    PersonaSource,
    Scenario,
)


def awake(step: int, info: AgentInfo, rng: random.Random) -> bool:
    """Villagers with nobody to talk to stay home; others are out four nights in five."""
    return bool(info.neighbours) and rng.random() < 0.8


SCENARIO = Scenario(
    name="fantasy_village",
    description="NPCs of a lakeside mining village talk to their neighbours as a curse spreads.",
    personas=PersonaSource(limit=40),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=4),
    steps=5,
    tasks=("npc_dialogue", "conversation"),
    task_weights=(2.0, 1.0),
    world_file="worlds/fantasy_village.md",
    activation=Activation(mode="function", when=awake),
    memory=Memory(observations=4, own=3, summary_terms=20),
    events=(
        Event(step=2, text="Pale figures with cold lights were seen walking from the Gullet to the shore.",
              audience=Audience(near=1, hops=2)),
        Event(step=3, text="The lake has fallen another hand's width; dead fish float by the shrine."),
        Event(step=4, text="The tax-reeve's rider brings word: the Thaw Fair will go ahead.",
              audience=Audience(text_contains=("owner", "shop", "market", "trader"))),
    ),
    interventions=(
        Intervention(step=3, action="set_persona", target=2,
                     text="A sworn Reedwarden who keeps the Still Lady's shrine and believes the "
                          "breach of the Hush must be sealed with blessed stone before the Thaw Fair."),
        Intervention(step=3, action="add_edge", target=1, other=12, relation="watch partner"),
        Intervention(step=4, action="add_memory", target=1,
                     text="Last night I saw a lampwight stop and look straight at my door."),
    ),
    seed=13,
)

if __name__ == "__main__":
    main(__file__)
