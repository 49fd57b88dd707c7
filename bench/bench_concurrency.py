"""Model-call throughput and client CPU against a slow OpenAI-compatible server, with fair peers.

    python bench/bench_concurrency.py [--concurrency 64 256] [--rounds 8] [--latency 0.5]
                                      [--repeat 3] [--simulation] [--server process|thread]
                                      [--experiment N [--replicates 2]]

One loopback server (``personahub/models/fake_server/server.py``) answers every request after
``--latency`` seconds; it
runs in a child process, so its CPU is not counted as the client's. At each concurrency ``c``,
``c x --rounds`` calls with the same structured-output schemas and agent prompts, each client in
its own event loop, gathered under a semaphore of ``c``:

1. the bound: ``c / latency`` calls/s (no client can beat it);
2. ``aiohttp``: a raw aiohttp gather, one ``ClientSession`` with ``c`` connections (the wire);
3. ``openai-sdk``: ``AsyncOpenAI(http_client=DefaultAioHttpClient())`` and
   ``chat.completions.create`` — the SDK as its README recommends for concurrency;
4. ``personahub``: ``make_client(...).structured(...)`` — the whole model seam (validation,
   cache, retries, limits, failover, accounting) over langchain-openai and the openai SDK.

For each: calls/s, the fraction of the bound, client setup seconds, and client CPU ms per call
(process CPU time over setup and calls / calls). Each client runs ``--repeat`` times, the clients
interleaved, and the run of median rate is printed per client after the single runs: with all
calls starting together, a run's fraction moves by about a hundredth with the machine's noise.
``--simulation`` adds ``run_scenario`` runs (calls/s over the steps phase). The last line is
``RESULT c64=<personahub / bound> c256=<personahub / bound> cpu_ms=<personahub CPU ms per call>``
from our median runs (cpu_ms: the largest concurrency's).

``--experiment N`` first runs a small two-arm experiment (``EXPERIMENT`` below, ``--replicates``
per arm) over the server twice, its runs one after another and then ``parallel=N`` at once
(issue 47), each into a fresh database, and prints ``EXPERIMENT sequential=<s> parallel=<s>
speedup=<ratio> same_effects=<bool>`` (``--concurrency`` with no value skips the client runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _synthetic import write_personas, write_scenario


def _serve(latency: float, urls: mp.Queue, stop: mp.Event, lifetime: float) -> None:
    from personahub.models.fake_server.server import ServerOptions, start_server

    handle = start_server(ServerOptions(latency_s=latency))
    urls.put(handle.base_url)
    stop.wait(lifetime)
    handle.stop()


class Server:
    """The loopback server in a child process (or a thread of this one)."""

    def __init__(self, latency: float, mode: str, lifetime: float) -> None:
        self.mode = mode
        if mode == "thread":
            from personahub.models.fake_server.server import ServerOptions, start_server

            self._handle = start_server(ServerOptions(latency_s=latency))
            self.url = self._handle.base_url
            return
        ctx = mp.get_context("spawn")
        urls: mp.Queue = ctx.Queue()
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_serve, args=(latency, urls, self._stop, lifetime),
                                    daemon=True)
        self._process.start()
        self.url = urls.get(timeout=60)

    def close(self) -> None:
        """Stop the server (and join its process)."""
        if self.mode == "thread":
            self._handle.stop()
            return
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()


@dataclass
class Figures:
    """One client's run at one concurrency."""

    name: str
    calls: int
    wall_s: float
    setup_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.calls / self.wall_s

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.calls


def _workload(calls: int) -> list[tuple[str, list[dict[str, str]]]]:
    """(kind, wire messages) per call: agent prompts of every emission kind."""
    from personahub.agents.prompts.agent import agent_messages

    kinds = _kinds()
    out = []
    for i in range(calls):
        kind = kinds[i % len(kinds)]
        messages = agent_messages(persona=f"A patient baker number {i} from Cork", kind=kind,
                                  world="A river town with a ferry.")
        out.append((kind, [{"role": _role(m), "content": str(m.content)} for m in messages]))
    return out


def _kinds() -> list[str]:
    from personahub.tasks import emission_kinds

    return list(emission_kinds())


def _role(message: Any) -> str:
    return {"system": "system", "human": "user", "ai": "assistant"}[message.type]


def _bodies(model: str) -> dict[str, dict[str, Any]]:
    """The request body (minus messages) per kind, as the seam sends it in json_schema mode."""
    from personahub.models.structured import response_format
    from personahub.tasks import emission_kinds, emission_task
    from personahub.tasks.max_tokens import kind_max_tokens

    EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}

    return {k: {"model": model, "max_tokens": kind_max_tokens(k),
                "response_format": response_format(s, "json_schema")}
            for k, s in EMISSION_SCHEMAS.items()}


async def _gather(concurrency: int, work: list[Any], one: Callable[[Any], Awaitable[None]]) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def limited(item: Any) -> None:
        async with semaphore:
            await one(item)

    started = time.perf_counter()
    await asyncio.gather(*[limited(item) for item in work])
    return time.perf_counter() - started


def _measure(name: str, url: str, concurrency: int, work: list[Any]) -> Figures:
    cpu = time.process_time()
    setup_s, wall_s = CLIENTS[name](url, concurrency, work)
    return Figures(name, len(work), wall_s, setup_s, time.process_time() - cpu)


def raw_aiohttp(url: str, concurrency: int, work: list[Any]) -> tuple[float, float]:
    """One aiohttp session with ``concurrency`` connections posting the JSON bodies."""
    import aiohttp

    bodies = _bodies("offline")

    async def main() -> tuple[float, float]:
        started = time.perf_counter()
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            setup_s = time.perf_counter() - started

            async def one(item: Any) -> None:
                kind, messages = item
                async with session.post(f"{url}/chat/completions",
                                        json={**bodies[kind], "messages": messages}) as response:
                    response.raise_for_status()
                    json.loads(await response.read())

            return setup_s, await _gather(concurrency, work, one)

    return asyncio.run(main())


def openai_sdk(url: str, concurrency: int, work: list[Any]) -> tuple[float, float]:
    """``AsyncOpenAI`` over ``DefaultAioHttpClient`` (the SDK README's advice for concurrency)."""
    from openai import AsyncOpenAI, DefaultAioHttpClient

    bodies = _bodies("offline")

    async def main() -> tuple[float, float]:
        started = time.perf_counter()
        async with AsyncOpenAI(base_url=url, api_key="not-needed", max_retries=0,
                               http_client=DefaultAioHttpClient()) as client:
            setup_s = time.perf_counter() - started

            async def one(item: Any) -> None:
                kind, messages = item
                body = bodies[kind]
                await client.chat.completions.create(
                    model=body["model"], messages=messages, max_tokens=body["max_tokens"],
                    response_format=body["response_format"])

            return setup_s, await _gather(concurrency, work, one)

    return asyncio.run(main())


def personahub(url: str, concurrency: int, work: list[Any]) -> tuple[float, float]:
    """The project's model seam: ``make_client`` and ``structured`` (json_schema mode)."""
    from langchain_core.messages import HumanMessage, SystemMessage

    from personahub.core.loop import run
    from personahub.models.client import LLMSettings, make_client
    from personahub.tasks import emission_kinds, emission_task
    from personahub.tasks.max_tokens import kind_max_tokens

    EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}

    types = {"system": SystemMessage, "user": HumanMessage}
    converted = [(kind, [types[m["role"]](m["content"]) for m in messages])
                 for kind, messages in work]

    async def main() -> tuple[float, float]:
        started = time.perf_counter()
        client = make_client(LLMSettings(spec=f"{url}?model=offline", concurrency=concurrency,
                                         structured="json_schema", max_retries=0))
        setup_s = time.perf_counter() - started

        async def one(item: Any) -> None:
            kind, messages = item
            result = await client.structured(EMISSION_SCHEMAS[kind], messages, purpose=kind,
                                             max_tokens=kind_max_tokens(kind))
            assert result.value is not None, result

        # the seam applies ``concurrency`` itself; the outer semaphore only mirrors the others
        return setup_s, await _gather(concurrency, converted, one)

    return run(main())


def simulate(url: str, agents: int, steps: int, concurrency: int) -> tuple[int, float]:
    """(model calls, seconds of the steps phase) of one ``run_scenario`` run."""
    import duckdb

    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = write_personas(base / "people.jsonl", agents, seed=3)
        scenario = load_scenario(write_scenario(base / "conc.py", people, steps=steps,
                                                name="concurrency"))
        db = base / "conc.duckdb"
        summary = run_simulation(RunConfig(scenario=scenario, db=db, llm=f"{url}?model=offline",
                                                    concurrency=concurrency, timeout_s=60))
        con = duckdb.connect(str(db), read_only=True)
        calls = con.execute("select count(*) from llm_calls").fetchone()[0]
        first, last = con.execute("select min(started_at), max(finished_at) from steps").fetchone()
        con.close()
    assert summary.failed_actions == 0, summary
    return calls, (last - first).total_seconds()


EXPERIMENT = '''
from personahub.sim.experiment import Arm, Experiment, Outcome
from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario, Survey
SCENARIO = Scenario(
    name="bench_parallel", personas=PersonaSource(limit=8),
    graph=GraphGrowth(hops=0, acquaintances=2), steps=3, tasks=("npc_dialogue",),
    activation=Activation(mode="count", count=4),
    surveys=(Survey(id="buy", steps=(1, 3), options=("yes", "no", "unsure"), question="Buy?"),),
    seed=11)
EXPERIMENT = Experiment(arms=(Arm(name="calm"), Arm(name="rumour", world="A rumour spreads.")),
                        replicates=REPLICATES,
                        outcomes=(Outcome(survey="buy", step=3, options=("yes",)),))
'''


def experiment_walls(url: str, parallel: int, replicates: int) -> tuple[float, float, bool]:
    """Wall seconds of ``EXPERIMENT`` with its runs one after another, then ``parallel`` at
    once, over the server at ``url`` (each into a fresh database), and whether both gave the same
    effect table (offline they do, ``tests/sim/test_experiment_parallel.py``; over the server a
    few answers have differed, see bench/RESULTS.md)."""
    from personahub.experiments import experiment

    walls, tables = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_parallel.py"
        path.write_text(EXPERIMENT.replace("REPLICATES", str(replicates)), encoding="utf-8")
        for n in (1, parallel):
            start = time.perf_counter()
            result = experiment(path, db=Path(folder) / f"p{n}.duckdb",
                                llm=f"{url}?model=offline", parallel=n, timeout_s=60)
            walls.append(time.perf_counter() - start)
            tables.append(result.effects)
    return walls[0], walls[1], tables[0].equals(tables[1])


def _import_all() -> None:
    import aiohttp  # noqa: F401
    import langchain_openai  # noqa: F401
    import openai  # noqa: F401
    from openai import DefaultAioHttpClient  # noqa: F401

    from personahub.models import client, endpoint_specs, openai_wire  # noqa: F401


CLIENTS: dict[str, Callable[[str, int, list[Any]], tuple[float, float]]] = {
    "aiohttp": raw_aiohttp, "openai-sdk": openai_sdk, "personahub": personahub}


def _row(name: str, figures: Figures, bound: float) -> None:
    print(f"  {name:<12} {figures.rate:8.1f} {figures.rate / bound:9.3f} "
          f"{figures.setup_s:8.3f} {figures.cpu_ms:12.2f}")


def _median(runs: list[Figures]) -> Figures:
    """The run of median rate (its own CPU and setup figures, not a mix of runs)."""
    return sorted(runs, key=lambda f: f.rate)[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=8, help="calls = concurrency x rounds")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--simulation", action="store_true",
                        help="also run the simulation (run_scenario) at each concurrency")
    parser.add_argument("--agents", type=int, default=1000, help="simulation agents")
    parser.add_argument("--steps", type=int, default=3, help="simulation steps")
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--server-lifetime", type=float, default=900.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per client, interleaved; RESULT takes the median of ours")
    parser.add_argument("--experiment", type=int, default=0, metavar="N",
                        help="also an experiment, sequential against --parallel N")
    parser.add_argument("--replicates", type=int, default=2, help="the experiment's per arm")
    args = parser.parse_args()
    _import_all()  # imports are not a client's per-call CPU
    server = Server(args.latency, args.server, args.server_lifetime)
    fractions: dict[int, float] = {}
    cpu_ms = float("nan")
    try:
        print(f"server: {args.server}, latency {args.latency} s; client CPU = this process's")
        if args.experiment:
            sequential, parallel, same = experiment_walls(server.url, args.experiment,
                                                          args.replicates)
            print(f"EXPERIMENT sequential={sequential:.1f} parallel={parallel:.1f} "
                  f"speedup={sequential / parallel:.2f} same_effects={same} (2 arms x "
                  f"{args.replicates} replicates, --parallel {args.experiment})")
        for concurrency in args.concurrency:
            bound = concurrency / args.latency
            calls = concurrency * args.rounds
            work = _workload(calls)
            print(f"\nconcurrency {concurrency}: {calls:,} calls, bound {bound:.0f} calls/s")
            print(f"  {'client':<12} {'calls/s':>8} {'of bound':>9} {'setup s':>8} "
                  f"{'CPU ms/call':>12}")
            runs: dict[str, list[Figures]] = {name: [] for name in args.clients}
            for _ in range(args.repeat):  # interleaved: a noisy spell hits every client alike
                for name in args.clients:
                    figures = _measure(name, server.url, concurrency, work)
                    runs[name].append(figures)
                    _row(name, figures, bound)
            if args.repeat > 1:
                print(f"  median of {args.repeat}:")
                for name, figures_list in runs.items():
                    _row(name, _median(figures_list), bound)
            if "personahub" in runs:
                ours = _median(runs["personahub"])
                fractions[concurrency], cpu_ms = ours.rate / bound, ours.cpu_ms
            if args.simulation:
                sim_calls, steps_s = simulate(server.url, args.agents, args.steps, concurrency)
                rate = sim_calls / steps_s
                print(f"  {'simulation':<12} {rate:8.1f} {rate / bound:9.3f} "
                      f"({sim_calls:,} calls, {args.agents:,} agents x {args.steps} steps)")
    finally:
        server.close()
    print("RESULT " + " ".join(f"c{c}={f:.3f}" for c, f in fractions.items())
          + f" cpu_ms={cpu_ms:.2f}")


if __name__ == "__main__":
    main()
