"""How many of a real small model's math and reasoning problems pass the problem check: the
shipped two-field shaped schema against the one free string it replaced.

    python bench/bench_problem_schema.py [--seeds 4] [--tasks math_problem,reasoning_problem]

Starts llama.cpp's ``llama-server`` (``.ci/build_llama_server.sh``, or ``PERSONAHUB_LLAMA_SERVER``)
with SmolLM2-135M-Instruct on 127.0.0.1, one thread, and asks, per seed and task, one problem for
each of four personas (``tests.conftest.persona_texts``), at temperature 0.8 and the kind's
``max_tokens``, in two variants, interleaved so the machine's noise weighs on both:

- ``shaped``: what ``personahub synthesize`` asks today: the task's prompt and its schema,
  bounded as the seam bounds it (``problem`` opening like a sentence, ``question`` ending in a
  question mark, both as ``pattern`` with the bound inside);
- ``free``: the prompt and schema before: one ``problem`` string bounded by ``maxLength`` only,
  asked as "a challenging math problem ... end it with the question to answer".

Each answer goes through the task's own check (``problem_issue``) as synthesis screens it; an
answer cut off at ``max_tokens`` counts as ``cut``. Prints the outcomes per task and variant and
``RESULT <task> shaped=K/N free=K/N ratio=..`` (kept shares, measured in the same run).
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Annotated, Any

from pydantic import BaseModel, Field

ROLES = {"system": "system", "human": "user", "ai": "assistant"}
FREE_PROMPTS = {
    "math_problem": "Create a challenging math problem that this persona would meet in their work "
                    "or life. It needs advanced skills to solve, and its numbers and setting come "
                    "from the persona's world. Write only the problem, not the solution, and end "
                    "it with the question to answer, ending in a question mark.",
    "reasoning_problem": "Create a logical reasoning problem (a deduction, scheduling or "
                         "constraint puzzle) grounded in this persona's situation. It must have "
                         "exactly one correct answer that follows from the stated facts. Write "
                         "only the problem, not the solution, and end it with the question to "
                         "answer, ending in a question mark.",
}


def _free_schema() -> type[BaseModel]:
    from personahub.core.text_bounds import DIGITS

    class Problem(BaseModel):
        problem: Annotated[str, DIGITS] = Field(
            min_length=8, description="the full problem statement, ending with the question to "
                                      "answer")

    return Problem


def _ask(task: str, persona: str, variant: str) -> tuple[list[dict[str, str]], dict[str, Any], int]:
    """(messages, JSON schema, max_tokens) of one problem in ``variant``."""
    from personahub.models.bounds import bounded
    from personahub.pipelines.prompts.synthesis import synthesis_messages
    from personahub.tasks import synthesis_task
    from personahub.tasks.prompting import prompt_messages

    spec = synthesis_task(task)
    budget = spec.emission.max_tokens if spec.emission else 640
    if variant == "shaped":
        messages, schema = synthesis_messages(task, persona), spec.synthesis_schema()
    else:
        messages, schema = prompt_messages(FREE_PROMPTS[task], persona), _free_schema()
    wire = [{"role": ROLES[m.type], "content": str(m.content)} for m in messages]
    return wire, bounded(schema, budget).model_json_schema(), budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--tasks", default="math_problem,reasoning_problem")
    args = parser.parse_args()

    import json

    from openai import OpenAI

    from personahub.models.llamacpp import local_llama_cpp_server
    from personahub.tasks.validators import problem_issue
    from tests.conftest import persona_texts

    tasks = args.tasks.split(",")
    counts = {(t, v): Counter[str]() for t in tasks for v in ("shaped", "free")}
    with local_llama_cpp_server() as server:
        client = OpenAI(base_url=server.base_url, api_key="none")
        for seed in range(args.seeds):
            for task in tasks:
                for persona in persona_texts(4):
                    order = ("shaped", "free") if seed % 2 == 0 else ("free", "shaped")
                    for variant in order:
                        messages, schema, budget = _ask(task, persona, variant)
                        reply = client.chat.completions.create(
                            model=server.model, messages=messages, max_tokens=budget, seed=seed,  # type: ignore[arg-type]
                            temperature=0.8, response_format={"type": "json_schema", "json_schema": {
                                "name": "Problem", "schema": schema}})
                        choice = reply.choices[0]
                        if choice.finish_reason != "stop":
                            counts[task, variant]["cut"] += 1
                            continue
                        content = json.loads(choice.message.content or "{}")
                        issue = problem_issue(content, needs_quantity=task == "math_problem")
                        counts[task, variant][issue.code if issue else "kept"] += 1
    results = []
    for task in tasks:
        shares = {}
        for variant in ("shaped", "free"):
            outcome = counts[task, variant]
            print(task, variant, dict(outcome.most_common()))
            shares[variant] = (outcome["kept"], sum(outcome.values()))
        (sk, sn), (fk, fn) = shares["shaped"], shares["free"]
        ratio = f"{(sk / sn) / (fk / fn):.2f}" if fk else "inf"
        results.append(f"{task} shaped={sk}/{sn} free={fk}/{fn} ratio={ratio}")
    print("RESULT " + " | ".join(results))


if __name__ == "__main__":
    main()
