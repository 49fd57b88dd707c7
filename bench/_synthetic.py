"""Shared helpers of the benchmarks: import this checkout, write synthetic personas and scenarios."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark this checkout, not an installed copy
    sys.path.insert(0, str(ROOT))

ROLES = ["nurse", "baker", "ferry pilot", "librarian", "welder", "beekeeper", "data engineer",
         "farmer", "pharmacist", "teacher", "plumber", "florist", "barista", "mechanic",
         "translator", "carpenter", "midwife", "geologist", "bus driver", "archivist"]
PLACES = ["Lisbon", "Accra", "Osaka", "Leeds", "Quito", "Tartu", "Perth", "Cork", "Pune", "Oslo",
          "Recife", "Hanoi", "Tromso", "Lagos", "Cusco", "Graz", "Mysore", "Hobart"]
TRAITS = ["patient", "curious", "blunt", "meticulous", "cheerful", "stubborn", "shy", "restless"]
HOBBIES = ["chess", "birdwatching", "sourdough", "cycling", "poetry", "robotics", "gardening",
           "jazz", "hiking", "pottery", "astronomy", "rowing", "knitting", "film photography"]


def write_personas(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct template-built personas as Persona Hub JSONL (seeded, no model involved)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            text = (f"A {rng.choice(TRAITS)} {rng.choice(ROLES)} from {rng.choice(PLACES)}, "
                    f"aged {rng.randint(19, 80)}, who spends weekends on {rng.choice(HOBBIES)} "
                    f"and {rng.choice(HOBBIES)} (resident no. {i}).")
            out.write(json.dumps({"persona": text}) + "\n")
    return path


def write_scenario(path: Path, personas: Path, *, steps: int, activation: float = 1.0,
                   name: str = "bench", seed: int = 1) -> Path:
    """A scenario script over ``personas`` with no expansion (``hops=0``) and 4 acquaintances."""
    path.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario\n\n"
        f"SCENARIO = Scenario(name={name!r}, personas=PersonaSource(path={str(personas)!r}),\n"
        "    graph=GraphGrowth(hops=0, acquaintances=4), "
        f"steps={steps}, activation={activation}, seed={seed},\n"
        "    world='A river town with a ferry, a market and a library.')\n",
        encoding="utf-8",
    )
    return path


def template_population(db: Path, people: int, shares: dict[str, dict[str, float]]) -> str:
    """A seeded population of ``people`` template personas over ``shares`` (attribute -> value
    -> share) written to ``db``; returns its id (what ``calibrate --population`` takes)."""
    from personahub.core.store import connect, transaction
    from personahub.personas.population import draw_population, template_personas
    from personahub.personas.population_files import Marginals
    from personahub.personas.store import upsert_personas

    population = draw_population(people, seed=0, marginals=Marginals(shares))
    con = connect(db)
    try:
        with transaction(con):
            upsert_personas(con, template_personas(population))
    finally:
        con.close()
    return population.population_id
