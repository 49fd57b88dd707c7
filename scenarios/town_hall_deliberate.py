"""Town hall, deliberate: the Port Carrow debate where each resident decides what to do.

The same town, events, intervention and surveys as town_hall_policy.py (seed 31), with
policy="deliberate": before acting, an active resident makes one structured call (purpose
"decide") choosing which of the four kinds to write, whom among up to six neighbours to
address (the latest senders in its inbox are listed first, marked "wrote to you"), or nothing,
with a short reason. The decision is stored in the decisions table; whoever chose "nothing" writes
nothing that step. Deliberation matters here because the survey answers are shaped by what
people heard: who talks, and to whom, changes what each resident's inbox and memory hold when
the step-5 survey asks again.

Compared with the scripted policy (offline engine, seed 31, 120 agents, both files run with
"personahub run" as shipped; the offline engine answers at random from the prompt, so these
figures show the mechanics, not opinion dynamics a model would produce):

                                      scripted           deliberate
                                      (town_hall_policy) (this file)
    support/oppose/undecided, step 2  41 / 37 / 42       37 / 45 / 38
    support/oppose/undecided, step 5  37 / 43 / 40       36 / 37 / 47
    changed their answer, 2 -> 5      77 of 120          88 of 120
    mean strength (1..7), 2 -> 5      3.93 -> 3.97       4.07 -> 4.22
    active agent-steps                427                427 (89 chose nothing)
    emissions / messages              427 / 299          338 / 152
    messages that reply               145 (48%)          22 (14%)
    model calls                       967                1,305 (427 of them decide)

The scripted policy answers the latest sender 70% of the time by rule; a deliberating agent
answers whom its decision names (the offline engine picks a label at random; 47 decisions named
nobody for a kind said to someone and fell back to the first person shown: "fallback").
With a real model, compare the two files' trajectories with::

    personahub sql "select step, answer_choice, count(*) from survey_answers
                    where survey_id = 'support' group by all order by all"
    personahub sql "select step, action, count(*) from decisions group by all order by all"
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
    name="town_hall_deliberate",
    description="The Port Carrow town hall with deliberating agents: each decides what to do, "
                "whom to answer, or nothing.",
    personas=PersonaSource(limit=60),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=4),
    steps=5,
    tasks=("npc_dialogue", "conversation", "instruction", "math_problem"),
    task_weights=(2.0, 1.0, 1.0, 0.5),  # deliberate: only which kinds are options (all here)
    policy="deliberate",
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
