"""Model-call throughput of the simulation against a slow OpenAI-compatible server.

    python bench/bench_concurrency.py [--agents 1000] [--steps 3] [--latency 0.5]
                                      [--concurrency 64] [--server process|thread]

One loopback server (``agents/server.py``) answers every request after ``--latency`` seconds.
Against it, in one process run:

1. the simulation: ``run_scenario`` with ``--llm`` the server URL, ``agents x steps`` model calls
   (activation 1, no expansion) — calls/s over the steps phase (from the ``steps`` table);
2. the plain client: ``ChatOpenAI.ainvoke`` gathered under a semaphore of ``--concurrency`` over
   the same number of calls with the same schema and prompts of the same kind;
3. the bound: concurrency / latency (128 calls/s for 64 and 0.5 s).

Prints calls/s of each and the ratios simulation/plain (goal >= 0.9) and simulation/bound (goal
>= 0.8). By default the server runs in a child process (a real model server is another process;
in a thread it would share this interpreter's lock with the client being measured). The child
stops itself after ``--server-lifetime`` seconds at the latest.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from _synthetic import write_personas, write_scenario


def _serve(latency: float, urls: mp.Queue, stop: mp.Event, lifetime: float) -> None:
    from personahub.agents.server import ServerOptions, start_server

    handle = start_server(ServerOptions(latency_s=latency))
    urls.put(handle.base_url)
    stop.wait(lifetime)
    handle.stop()


class Server:
    """The loopback server in a child process (or a thread of this one)."""

    def __init__(self, latency: float, mode: str, lifetime: float) -> None:
        self.mode = mode
        if mode == "thread":
            from personahub.agents.server import ServerOptions, start_server

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


def simulate(url: str, agents: int, steps: int, concurrency: int) -> tuple[int, float, float]:
    """(model calls, seconds of the steps phase, seconds of the whole run) of one run."""
    import duckdb
    from personahub.sim.runner import RunOptions, run_scenario
    from personahub.sim.scenario import load_scenario

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = write_personas(base / "people.jsonl", agents, seed=3)
        scenario = load_scenario(write_scenario(base / "conc.py", people, steps=steps,
                                                name="concurrency"))
        db = base / "conc.duckdb"
        started = time.perf_counter()
        summary = run_scenario(scenario, RunOptions(db=db, llm=f"{url}?model=offline",
                                                    concurrency=concurrency, timeout_s=60))
        total_s = time.perf_counter() - started
        con = duckdb.connect(str(db), read_only=True)
        calls = con.execute("select count(*) from llm_calls").fetchone()[0]
        first, last = con.execute("select min(started_at), max(finished_at) from steps").fetchone()
        con.close()
    assert summary.failed_actions == 0, summary
    return calls, (last - first).total_seconds(), total_s


async def plain(url: str, calls: int, concurrency: int) -> float:
    """Seconds for ``calls`` ChatOpenAI.ainvoke calls gathered under a semaphore."""
    import httpx
    from langchain_openai import ChatOpenAI
    from personahub.agents.prompts import agent_messages
    from personahub.agents.schemas import EMISSION_SCHEMAS
    from personahub.agents.structured import response_format

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        chat = ChatOpenAI(model="offline", base_url=url, api_key="not-needed", max_retries=0,
                          timeout=60, http_async_client=http)
        kinds = list(EMISSION_SCHEMAS)
        bound = {k: chat.bind(response_format=response_format(EMISSION_SCHEMAS[k], "json_schema"))
                 for k in kinds}
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            kind = kinds[i % len(kinds)]
            messages = agent_messages(persona=f"A patient baker number {i} from Cork", kind=kind,
                                      world="A river town with a ferry.")
            async with semaphore:
                await bound[kind].ainvoke(messages)

        started = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(calls)])
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--server-lifetime", type=float, default=900.0)
    args = parser.parse_args()
    server = Server(args.latency, args.server, args.server_lifetime)
    try:
        calls, steps_s, total_s = simulate(server.url, args.agents, args.steps, args.concurrency)
        plain_s = asyncio.run(plain(server.url, calls, args.concurrency))
    finally:
        server.close()
    bound = args.concurrency / args.latency
    sim_rate, plain_rate = calls / steps_s, calls / plain_s
    print(f"server: {args.server}, latency {args.latency} s, concurrency {args.concurrency}")
    print(f"simulation: {calls:,} calls ({args.agents:,} agents x {args.steps} steps) in "
          f"{steps_s:.2f} s of steps = {sim_rate:.1f} calls/s (whole run incl. setup "
          f"{total_s:.2f} s = {calls / total_s:.1f} calls/s)")
    print(f"plain ChatOpenAI.ainvoke gather: {calls:,} calls in {plain_s:.2f} s = "
          f"{plain_rate:.1f} calls/s")
    print(f"bound: concurrency / latency = {bound:.1f} calls/s")
    print(f"ratios: simulation / plain = {sim_rate / plain_rate:.3f} (goal >= 0.9); "
          f"simulation / bound = {sim_rate / bound:.3f} (goal >= 0.8); "
          f"plain / bound = {plain_rate / bound:.3f}")


if __name__ == "__main__":
    main()
