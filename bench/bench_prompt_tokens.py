"""Prompt tokens per action, without and with the prompt budget, against a Persona Hub prompt.

    python bench/bench_prompt_tokens.py [--scenario scenarios/riverside_town.py] [--steps N]
                                        [--tiktoken]

Runs the scenario offline twice in one process: with ``PromptBudget.unlimited()`` (every part in
full, as prompts were before budgets, with today's texts) and with the scenario's own budget.
Every agent and survey prompt is counted as the budget counts it (4 characters a token, like the
offline engine's ``tokens_in``); ``--tiktoken`` adds cl100k counts when tiktoken and its encoding
are available. Prints mean, p50 and p95 at step 1 and at the last step, the mean over all steps,
the ratio to a one-line Persona Hub prompt ("Create a math problem with the following persona:
{persona}") over the same personas, and the JSON schema tokens an endpoint without native
structured output adds on top.

It also measures what a server's prefix cache could reuse: each prompt's longest common prefix
with any earlier prompt of the run, in the same approximate tokens
(``models.prompt_prefix.SharedPrefixMeter``, prompts in the order the run made them, messages laid
out as role and content as a chat template does). The last line is
``RESULT median_tokens=<p50 per action, default budget> p90_tokens=<p90> shared_prefix=<share>``
(issue 16's goal: median <= 400, shared prefix >= 0.6).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from personahub.agents.prompts.budget import PromptBudget, count_prompt_tokens, count_tokens
from personahub.api import run_simulation
from personahub.models.client import make_client
from personahub.models.offline_text import split_sections
from personahub.models.prompt_prefix import SharedPrefixMeter
from personahub.pipelines.run import RUN, RunConfig
from personahub.sim.scenario import Scenario, load_scenario
from personahub.tasks import emission_kinds, emission_task

EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}

PERSONA_HUB = "Create a math problem with the following persona: {persona}"
Prompt = tuple[int, str, list[Any]]  # (step, persona text, messages)


def record_prompts(scenario: Scenario, steps: int) -> list[Prompt]:
    """Run ``scenario`` offline and keep every prompt made during the steps."""
    with tempfile.TemporaryDirectory() as folder:
        options = RunConfig(scenario=scenario, db=Path(folder) / "bench.duckdb", steps=steps)
        client = make_client(RUN.model_settings(options))
        prompts: list[Prompt] = []
        structured = client.structured

        async def recording(schema: Any, messages: list[Any], **kwargs: Any) -> Any:
            if kwargs.get("step") is not None:  # persona expansion runs before step 1
                persona = split_sections(str(messages[-1].content)).get("persona", "")
                prompts.append((kwargs["step"], persona.strip(), messages))
            return await structured(schema, messages, **kwargs)

        client.structured = recording  # type: ignore[method-assign]
        run_simulation(options, client=client)
    return prompts


def stats(values: list[int]) -> str:
    """Mean, p50, p90 and p95 of token counts."""
    array = np.array(values, dtype=float)
    return (f"mean {array.mean():7.1f}  p50 {np.percentile(array, 50):6.0f}  "
            f"p90 {np.percentile(array, 90):6.0f}  p95 {np.percentile(array, 95):6.0f}  "
            f"(n={len(values)})")


def shared_prefix(prompts: list[Prompt]) -> float:
    """The share of prompt tokens in a prefix shared with an earlier prompt of the run."""
    meter = SharedPrefixMeter()
    for _, _, messages in prompts:
        meter.add(messages)
    return meter.share


def report(label: str, prompts: list[Prompt], counter: Callable[[list[Any]], int],
           hub: float) -> float:
    """Print the figures of one run; returns its mean over all steps."""
    last = max(step for step, _, _ in prompts)
    counts = [counter(messages) for _, _, messages in prompts]
    for step in (1, last):
        print(f"  {label:<10} step {step}: "
              f"{stats([c for (s, _, _), c in zip(prompts, counts, strict=True) if s == step])}")
    mean = float(np.mean(counts))
    print(f"  {label:<10} all steps: {stats(counts)}  = {mean / hub:.1f}x Persona Hub")
    return mean


def tiktoken_counter() -> Callable[[list[Any]], int] | None:
    """cl100k counts of a message list, or None when tiktoken or its encoding is unavailable."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base")
    except Exception as exc:  # noqa: BLE001 - optional: any failure means "not available"
        print(f"tiktoken not available ({type(exc).__name__}); approximate counts only")
        return None
    return lambda messages: sum(len(encoding.encode(str(m.content))) for m in messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="scenarios/riverside_town.py")
    parser.add_argument("--steps", type=int, default=None, help="default: the scenario's steps")
    parser.add_argument("--tiktoken", action="store_true", help="also count with tiktoken cl100k")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    steps = args.steps or scenario.steps
    unlimited = dataclasses.replace(scenario, prompt_budget=PromptBudget.unlimited())
    runs = {"unlimited": record_prompts(unlimited, steps), "budget": record_prompts(scenario, steps)}
    counters: dict[str, Callable[[list[Any]], int]] = {"approx": count_prompt_tokens}
    if args.tiktoken and (exact := tiktoken_counter()) is not None:
        counters["cl100k"] = exact
    personas = sorted({p for _, p, _ in runs["budget"]})
    print(f"{scenario.name}: {steps} steps, {len(runs['budget'])} prompts per run, "
          f"budget {scenario.prompt_budget}")
    for name, counter in counters.items():
        hub = float(np.mean([counter([_Text(PERSONA_HUB.format(persona=p))]) for p in personas]))
        print(f"[{name}] Persona Hub one-line prompt: mean {hub:.1f} tokens")
        before = report("unlimited", runs["unlimited"], counter, hub)
        after = report("budget", runs["budget"], counter, hub)
        print(f"  budget / unlimited: {after / before:.2f}")
    schemas = {kind: count_tokens(json.dumps(schema.model_json_schema()))
               for kind, schema in EMISSION_SCHEMAS.items() if kind in scenario.tasks}
    print(f"JSON schema tokens, added when an endpoint needs the schema in the prompt: {schemas}")
    shares = {name: shared_prefix(prompts) for name, prompts in runs.items()}
    print("shared prefix (share of prompt tokens a prefix cache could reuse): "
          + "  ".join(f"{name} {share:.2f}" for name, share in shares.items()))
    counts = [count_prompt_tokens(messages) for _, _, messages in runs["budget"]]
    print(f"RESULT median_tokens={np.percentile(counts, 50):.0f} "
          f"p90_tokens={np.percentile(counts, 90):.0f} shared_prefix={shares['budget']:.2f}")


@dataclasses.dataclass(frozen=True)
class _Text:
    """A bare message (what the counters read: ``content``)."""

    content: str


if __name__ == "__main__":
    main()
