"""Town hall policy: opinion on a short-term rental cap before and after the council acts.

Sixty seed personas (plus one hop) live in Port Carrow, where Proposal 26-14 would cap and tax
whole-home short-term rentals (worlds/town_hall_policy.md). Residents argue with neighbours
(lines and short conversations), ask assistants about it, and work through the numbers (math
problems). Everyone is surveyed at step 2 (before) and step 5 (after): support or oppose (choice)
and how strongly they feel (scale 1..7). At step 3 the council passes the proposal on first
reading (everyone hears); hosts receive a letter about registration fees; a councillor changes
sides (persona intervention). Survey answers are remembered, so people know what they said before.

Compare before and after with::

    personahub sql "select step, answer_choice, count(*) from survey_answers
                    where survey_id = 'support' group by all order by all"
"""

from personahub.cli import main
from personahub.sim.scenario import (
    Audience,
    Event,
    GraphGrowth,
    Intervention,
    PersonaSource,
    Scenario,
    Survey,
)

SCENARIO = Scenario(
    name="town_hall_policy",
    description="Port Carrow debates a short-term rental cap: opinion before and after the vote.",
    personas=PersonaSource(limit=60),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=4),
    steps=5,
    tasks=("npc_dialogue", "conversation", "instruction", "math_problem"),
    task_weights=(2.0, 1.0, 1.0, 0.5),
    world_file="worlds/town_hall_policy.md",
    activation=0.7,
    events=(
        Event(step=1, text="The council publishes Proposal 26-14 and opens a public consultation."),
        Event(step=3, text="The council passes Proposal 26-14 on first reading, 7 votes to 4; the "
                           "final vote is in a month."),
        Event(step=3, text="Registered hosts receive a letter: the annual registration fee will "
                           "be 450 and the nightly levy 4 percent.",
              audience=Audience(text_contains=("owner", "landlord", "host", "rent", "property"))),
    ),
    interventions=(
        Intervention(step=3, action="set_persona", target=1,
                     text="A Port Carrow city councillor who first opposed Proposal 26-14 and, "
                          "after hearing young families at the town hall, now supports it."),
        Intervention(step=4, action="add_memory", target=1,
                     text="At the town hall a teacher told me she moved out of the old town "
                          "because rents doubled in three years."),
    ),
    surveys=(
        Survey(id="support", steps=(2, 5), answer="choice", options=("support", "oppose", "undecided"),
               question="Do you support Proposal 26-14, the short-term rental cap?", remember=True),
        Survey(id="strength", steps=(2, 5), answer="scale", low=1, high=7,
               question="How strongly do you feel about Proposal 26-14 (1 = do not care, "
                        "7 = very strongly)?"),
    ),
    seed=31,
)

if __name__ == "__main__":
    main(__file__)
