"""Offline engine per-call cost: calls/s of the offline path as the simulation drives it.

    python bench/bench_offline_engine.py [--calls 20000] [--repeat 1] [--kinds default|all] [--profile]

Builds ``--calls`` varied agent inputs (distinct synthetic personas, the scale benchmark's world,
events, inbox messages from neighbours, memory, addressees) and times, separately:

- ``prompts``: ``agent_messages`` for every input (the observe node's work);
- ``structured``: ``LLMClient(LLMSettings(spec="offline", seed=1)).structured`` over the prompts,
  gathered in chunks of 128 like the agent graph's act node;
- ``respond``: ``OfflineEngine.respond`` alone on the same prompts as plain dicts and JSON schemas;
- ``agents``: the whole agent graph (``run_agents``: observe, act, record) over the inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from _synthetic import HOBBIES, PLACES, ROLES, TRAITS

from personahub.agents.persona_agent import DEFAULT_CHUNK, AgentInput, run_agents
from personahub.agents.prompts.agent import agent_messages
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.offline import OfflineEngine, to_openai_dicts
from personahub.tasks import addressed_kinds, emission_kinds, emission_task
from personahub.tasks.max_tokens import kind_max_tokens

EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}
ADDRESSED_KINDS = addressed_kinds()

WORLD = "A river town with a ferry, a market and a library."
EVENTS = ("The ferry fare doubled overnight.", "A flood warning was issued for the lower bank.",
          "The library extends its opening hours.")
LINES = ("Have you heard anything more about the ferry fares?", "I'm worried about the flood barrier.",
         "Let's meet at the library on Tuesday.", "My family is split on the new market site.")
DEFAULT_KINDS = ("instruction", "npc_dialogue", "tool_spec")  # the Scenario default


def persona(rng: random.Random, i: int) -> str:
    """A distinct synthetic persona, as ``bench/_synthetic.py`` writes them."""
    return (f"A {rng.choice(TRAITS)} {rng.choice(ROLES)} from {rng.choice(PLACES)}, "
            f"aged {rng.randint(19, 80)}, who spends weekends on {rng.choice(HOBBIES)} "
            f"and {rng.choice(HOBBIES)} (resident no. {i}).")


def agent_inputs(n: int, kinds: tuple[str, ...], seed: int = 7) -> list[AgentInput]:
    """``n`` varied agent inputs of a step-2-like simulation (inbox, memory, own recent output)."""
    rng = random.Random(seed)
    people = [persona(rng, i) for i in range(n)]
    inputs = []
    for i, text in enumerate(people):
        kind = rng.choice(kinds)
        inbox = [(rng.choice(people), rng.choice(LINES)) for _ in range(rng.randint(0, 2))]
        inputs.append(AgentInput(
            persona_id=f"p{i}", persona=text, step=2, kind=kind, world=WORLD,
            events=[EVENTS[i % len(EVENTS)]] if i % 3 == 0 else [], inbox=inbox,
            addressee=rng.choice(people) if kind in ADDRESSED_KINDS else None,
            memory=["(step 1) The ferry fare doubled overnight."] if i % 2 else [],
            recent=[rng.choice(LINES)] if i % 4 == 0 else []))
    return inputs


def prompts_of(inputs: list[AgentInput]) -> list[Any]:
    """The observe node's prompts for ``inputs``."""
    return [agent_messages(persona=a["persona"], kind=a["kind"], world=a["world"], events=a["events"],
                           inbox=a["inbox"], addressee=a["addressee"], memory=a["memory"],
                           recent=a["recent"]) for a in inputs]


async def structured_all(inputs: list[AgentInput], prompts: list[Any]) -> int:
    """Every prompt through ``LLMClient.structured``, in act-node sized concurrent chunks."""
    client = LLMClient(LLMSettings(spec="offline", seed=1))
    ok = 0
    for start in range(0, len(inputs), DEFAULT_CHUNK):
        chunk = range(start, min(start + DEFAULT_CHUNK, len(inputs)))
        results = await asyncio.gather(*[
            client.structured(EMISSION_SCHEMAS[inputs[i]["kind"]], prompts[i], purpose=inputs[i]["kind"],
                              persona_id=inputs[i]["persona_id"], step=2,
                              max_tokens=kind_max_tokens(inputs[i]["kind"])) for i in chunk])
        ok += sum(r.value is not None for r in results)
    return ok


def respond_requests(inputs: list[AgentInput], prompts: list[Any]) -> list[tuple[Any, Any]]:
    """(dict messages, JSON schema) per prompt: what ``OfflineEngine.respond`` receives."""
    schemas = {kind: schema.model_json_schema() for kind, schema in EMISSION_SCHEMAS.items()}
    return [(to_openai_dicts(p), schemas[a["kind"]]) for a, p in zip(inputs, prompts, strict=True)]


def respond_all(requests: list[tuple[Any, Any]]) -> None:
    """Every request through ``OfflineEngine.respond`` alone."""
    engine = OfflineEngine(1)
    for messages, schema in requests:
        engine.respond(messages, json_schema=schema)


def timed(label: str, n: int, work: Callable[[], Any]) -> None:
    """Run ``work`` once and print calls/s and microseconds per call."""
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    print(f"  {label:<11} {n / elapsed:>9,.0f} calls/s  {elapsed / n * 1e6:>7.1f} us/call")


def run_once(inputs: list[AgentInput], profiler: cProfile.Profile | None) -> None:
    n = len(inputs)
    prompts: list[Any] = []
    timed("prompts", n, lambda: prompts.extend(prompts_of(inputs)))
    if profiler:
        profiler.enable()
    timed("structured", n, lambda: asyncio.run(structured_all(inputs, prompts)))
    if profiler:
        profiler.disable()
    requests = respond_requests(inputs, prompts)
    timed("respond", n, lambda: respond_all(requests))
    client = LLMClient(LLMSettings(spec="offline", seed=1))
    timed("agents", n, lambda: asyncio.run(run_agents(inputs, client)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="timing rounds in this process")
    parser.add_argument("--kinds", choices=("default", "all"), default="default")
    parser.add_argument("--profile", action="store_true", help="cProfile the structured calls")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key with --profile")
    args = parser.parse_args()
    kinds = DEFAULT_KINDS if args.kinds == "default" else tuple(EMISSION_SCHEMAS)
    inputs = agent_inputs(args.calls, kinds)
    profiler = cProfile.Profile() if args.profile else None
    for round_ in range(1, args.repeat + 1):
        print(f"round {round_}: {args.calls:,} calls, kinds={','.join(kinds)}")
        run_once(inputs, profiler)
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats(args.sort).print_stats(40)


if __name__ == "__main__":
    main()
