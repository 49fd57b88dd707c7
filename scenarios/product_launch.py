"""Product launch: how purchase intent for the Hoopoe Strider e-bike moves over a launch week.

Sixty seed personas (plus one persona-to-persona hop) hear about Hoopoe Cycles' first e-bike
(worlds/product_launch.md). The launch event reaches everyone at step 2; a battery rumour
reaches only people who ride or commute at step 4, and the company's answer everyone at step 5.
Thirty people act each step: they ask an assistant something, talk to a neighbour, or write a
short explainer. At steps 1, 3 and 5 everyone answers a purchase-intent survey (one choice), and
at step 5 a price-fairness scale. Read the answers with one query per step, e.g.::

    personahub sql "select step, answer_choice, count(*) from survey_answers
                    where survey_id = 'purchase_intent' group by all order by all"

Its EXPERIMENT runs it as three arms (no rumour, rumour, rumour answered) over five seeds:
"personahub experiment product_launch.py" prints the effects (docs/scenarios.md).
"""

from personahub.cli import main
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, Audience, Event, GraphGrowth, PersonaSource, Scenario, Survey

INTENT = ("definitely", "probably", "unsure", "probably not", "definitely not")

SCENARIO = Scenario(
    name="product_launch",
    description="Launch week of an affordable e-bike: word of mouth and purchase intent.",
    personas=PersonaSource(limit=60),
    graph=GraphGrowth(hops=1, fanout=1, acquaintances=4),
    steps=5,
    tasks=("instruction", "npc_dialogue", "knowledge_text"),
    task_weights=(1.0, 2.0, 0.5),
    world_file="worlds/product_launch.md",
    activation=Activation(mode="count", count=30),
    events=(
        Event(step=2, text="Launch day: the Hoopoe Strider goes on sale online and in forty shops "
                           "at an introductory price, with a five-year frame warranty."),
        Event(step=4, text="A cycling forum thread claims the Strider's battery is glued in and "
                           "cannot be replaced by independent shops.",
              audience=Audience(text_contains=("cycl", "bike", "commut", "ride", "driver"))),
        Event(step=5, text="Hoopoe answers the rumour: batteries are bolted, spares sold at cost, "
                           "and any partner shop can swap one in ten minutes."),
    ),
    surveys=(
        Survey(id="purchase_intent", steps=(1, 3, 5), answer="choice", options=INTENT,
               question="How likely are you to buy a Hoopoe Strider in the next six months?"),
        Survey(id="price_fairness", steps=(5,), answer="scale", low=1, high=10,
               question="How fair is the Strider's price for what it offers (1 = a rip-off, "
                        "10 = a bargain)?"),
    ),
    seed=21,
)

# "personahub experiment product_launch.py": what the rumour changes against no rumour, and
# what the company's answer changes against leaving it unanswered; each arm its own society from
# the same seeds (events are numbered from 0 in step order: 1 the rumour, 2 the answer).
EXPERIMENT = Experiment(
    arms=(Arm(name="no_rumour", drop_events=(1, 2)),
          Arm(name="rumour", drop_events=(2,)),
          Arm(name="rumour_answered")),
    replicates=5,
    outcomes=(Outcome(survey="purchase_intent", step=5, options=("definitely", "probably"),
                      name="intent_to_buy"),
              Outcome(survey="price_fairness", step=5)),
)

if __name__ == "__main__":
    main(__file__)
