"""personahub against a real model server, next to a plain openai client sending the same requests.

    python bench/bench_real_model.py [--requests 6] [--concurrency 1]

Needs the ``[llamacpp]`` extra: starts llama-cpp-python's server with SmolLM2-135M-Instruct on
127.0.0.1 (``personahub/models/llamacpp.py``) and, in one run:

1. personahub: ``LLMClient.structured`` (``--structured auto``: a new client's first request is
   refused and the endpoint moves to ``json_object``) over agent prompts of the default
   scenario's kinds, with the default prompt budget;
2. plain: ``openai.AsyncOpenAI`` gathered under the same concurrency, sending the same messages
   with ``response_format`` ``json_object`` + schema and the same ``max_tokens``;
3. the paper's prompt: "Create a math problem with the following persona: {persona}" for the
   same personas, to compare prompt tokens per action.

Requests go one at a time, alternating which client sends first, over two rounds. Both paths use
temperature 0, so the server generates the same tokens for both. Prints calls/s and
completion tokens/s of each, the ratio personahub/plain, and prompt tokens per action (personahub
vs the one-line persona prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from langchain_core.messages import BaseMessage


def _requests(n: int) -> list[tuple[str, type, list[BaseMessage], str]]:
    """(kind, schema, messages, persona) for ``n`` agent actions of the default scenario."""
    from personahub.agents.prompts.agent import agent_messages
    from personahub.personas.importers import iter_personas
    from personahub.sim.scenario import load_scenario
    from personahub.tasks import emission_kinds, emission_task

    EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}

    scenario = load_scenario("scenarios/riverside_town.py")
    people = [p.text for p, _ in zip(iter_personas(scenario.persona_path()), range(n), strict=False)]
    kinds = list(scenario.tasks)
    out = []
    for i, persona in enumerate(people):
        kind = kinds[i % len(kinds)]
        addressee = people[(i + 1) % len(people)] if kind == "npc_dialogue" else None
        messages = agent_messages(persona=persona, kind=kind, world=scenario.world_text(),
                                  addressee=addressee)
        out.append((kind, EMISSION_SCHEMAS[kind], messages, persona))
    return out


async def _personahub(spec: str, requests: list, concurrency: int) -> tuple[float, int, list[int]]:
    from personahub.models.client import LLMClient, LLMSettings
    from personahub.tasks.max_tokens import kind_max_tokens

    client = LLMClient(LLMSettings(spec=spec, concurrency=concurrency, temperature=0.0,
                                   timeout_s=600))
    started = time.perf_counter()
    results = await asyncio.gather(*[client.structured(schema, messages, purpose=kind,
                                                       max_tokens=kind_max_tokens(kind))
                                     for kind, schema, messages, _ in requests])
    wall = time.perf_counter() - started
    oks = [r.records[-1] for r in results if r.records]
    return wall, sum(r.tokens_out for res in results for r in res.records), \
        [r.tokens_in for r in oks if r.status != "error"]


async def _plain(base: str, model: str, requests: list, concurrency: int) -> tuple[float, int, list[int]]:
    from langchain_core.messages import convert_to_openai_messages
    from openai import AsyncOpenAI

    from personahub.tasks.max_tokens import kind_max_tokens

    client = AsyncOpenAI(base_url=base, api_key="not-needed", timeout=600, max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(kind: str, schema: type, messages: list[BaseMessage]) -> Any:
        async with gate:
            return await client.chat.completions.create(
                model=model, messages=convert_to_openai_messages(messages), temperature=0.0,
                max_tokens=kind_max_tokens(kind),
                response_format={"type": "json_object", "schema": schema.model_json_schema()})

    started = time.perf_counter()
    answers = await asyncio.gather(*[one(k, s, m) for k, s, m, _ in requests])
    wall = time.perf_counter() - started
    await client.close()
    return wall, sum(a.usage.completion_tokens for a in answers), \
        [a.usage.prompt_tokens for a in answers]


async def _paper_prompt_tokens(base: str, model: str, personas: list[str]) -> list[int]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base, api_key="not-needed", timeout=600, max_retries=0)
    tokens = []
    for persona in personas:
        answer = await client.chat.completions.create(
            model=model, max_tokens=1, messages=[{
                "role": "user", "content": f"Create a math problem with the following persona: {persona}"}])
        tokens.append(answer.usage.prompt_tokens)
    await client.close()
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()

    from personahub.models.llamacpp import local_llama_server

    requests = _requests(args.requests)
    plain_wall = ours_wall = 0.0
    plain_tokens = ours_tokens = 0
    ours_prompts: list[int] = []
    plain_prompts: list[int] = []
    with local_llama_server() as server:
        asyncio.run(_plain(server.base_url, server.model, requests[:1], 1))  # warm the server up
        asyncio.run(_personahub(server.spec, requests[:1], 1))  # and let auto settle its mode
        # request by request, alternating which client goes first: load on a noisy machine
        # then weighs on both alike
        for round_ in range(2):
            for i, request in enumerate(requests):
                order = ("ours", "plain") if (i + round_) % 2 == 0 else ("plain", "ours")
                for who in order:
                    if who == "ours":
                        wall, tokens, prompts = asyncio.run(
                            _personahub(server.spec, [request], args.concurrency))
                        ours_wall, ours_tokens = ours_wall + wall, ours_tokens + tokens
                        ours_prompts += prompts
                    else:
                        wall, tokens, prompts = asyncio.run(
                            _plain(server.base_url, server.model, [request], args.concurrency))
                        plain_wall, plain_tokens = plain_wall + wall, plain_tokens + tokens
                        plain_prompts += prompts
        paper = asyncio.run(_paper_prompt_tokens(server.base_url, server.model,
                                                 [r[3] for r in requests]))
    n = 2 * len(requests)
    print(f"{n} requests (two rounds), concurrency {args.concurrency}, SmolLM2-135M-Instruct Q4_1, 1 thread")
    print(f"plain openai client: {n / plain_wall:.3f} calls/s, {plain_tokens / plain_wall:.1f} "
          f"completion tokens/s ({plain_wall:.1f} s)")
    print(f"personahub:          {n / ours_wall:.3f} calls/s, {ours_tokens / ours_wall:.1f} "
          f"completion tokens/s ({ours_wall:.1f} s; each call a new client, so each pays "
          "the refused json_schema probe)")
    print(f"ratio personahub/plain (calls/s): {(n / ours_wall) / (n / plain_wall):.2f}")
    mean_ours = statistics.mean(ours_prompts or plain_prompts)
    mean_paper = statistics.mean(paper)
    print(f"prompt tokens per action: personahub {mean_ours:.0f} (server-counted, plain path "
          f"{statistics.mean(plain_prompts):.0f}), paper one-line prompt {mean_paper:.0f}, "
          f"ratio {mean_ours / mean_paper:.1f}x")


if __name__ == "__main__":
    main()
