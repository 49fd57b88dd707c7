"""The price of archetypes (issue 48 item 3): calls per answer and the archetype-versus-per-agent
distance per group for three values of K, offline and through the loopback server, and the time
and peak memory of grouping 100k and 1M personas.

    python bench/bench_archetypes.py [--personas 1200] [--questions 4] [--k 10 --k 100 --k 1000]
                                     [--scale 100000 --scale 1000000] [--no-server]
                                     [--run 100000 --run 1000000 [--run-k 100]
                                      [--activation 0.1] [--per-agent] [--only-runs]
                                      [--executor ray]]

Part 1: a seeded template population of ``--personas`` people over sex, party, race, region,
education and ideology (written to a temporary hub) and a synthetic survey of ``--questions``
four-point questions; ``calibrate --archetypes K`` for every K beside the per-agent ``sample``
row, with the offline engine and then through the loopback server (``personahub/models/fake_server``,
no added latency). Per K: its calls, calls per answer (calls / (personas x questions)), and the
mean similarity (1 - W1/(options-1)) and total variation distance to the per-agent row per group
(``Calibration.archetype_price()``). With the offline engine and the fake server every answer is
a seeded draw, not a language model: the distances measure the machinery (how far a K-archetype
draw strays from per-agent draws), not a model's consistency.

Part 2: ``personas.archetypes.group_archetypes`` (K = 100) on ``--scale`` synthetic personas
(template texts, three demographic attributes), each size in a fresh child process: the grouping's
wall time and the child's peak RSS (``resource.getrusage``, inputs included) beside the RSS before
grouping.

Part 3 (``--run N``, first): a society of N template personas (sex, party) with ``--run-k``
archetypes, two steps at ``--activation``, two unaddressed kinds (instruction, tool_spec) and a
three-option survey to everyone each step, offline, in a spawned child: per step its model calls
(``llm_calls``), active agents, answers and drawn answers; the run's wall time and peak RSS and
the step-1 survey shares per sex. ``--per-agent`` runs the same society without archetypes;
without ``--no-server`` it runs again through the loopback server. ``--executor ray`` runs the
same offline society on Ray too (``RunConfig(executor="ray")``, a local Ray of two CPUs started in
the child, one call actor per CPU), right after the local run: beside the driver's peak RSS, the
Ray workers' (each ``ray::`` worker process under the child, found with psutil and sampled every
0.5 s for its ``VmHWM`` in ``/proc/<pid>/status``; their sum, and the raylet and GCS apart), and the
Ray run's wall time and RSS over the local run's. Run it with an interpreter that has the [ray]
extra.

Lines: ``PRICE engine=<offline|server> k=<K> calls=<n> calls_per_answer=<x> similarity=<mean>
tvd=<mean> refusal=<mean> sample_refusal=<mean>`` (TVD counts refusal as an answer) and
``GROUP <attribute>=<group> ...`` under each, then ``SCALE personas=<n> k=100 seconds=<s>
rss_before_mb=<m> peak_rss_mb=<m>``, and ``RUN engine=<offline|server> agents=<n>
archetypes=<K> step=<s> ... calls=<c> calls_per_active=<x>`` per step (engine ``ray`` too, then
``RAY workers=<n> workers_peak_rss_mb=<sum> ...`` and ``RATIO ray/local ...``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import HOBBIES, PLACES, ROLES, TRAITS, template_population  # noqa: E402
from bench_calibrate import write_survey  # noqa: E402

# sex and party are the survey's groups; the rest make ~2,400 distinct profiles to group
SHARES = {"sex": {"female": 0.5, "male": 0.5}, "party": {"democrat": 0.5, "republican": 0.5},
          "race_ethnicity": {"white": 0.4, "black": 0.15, "asian": 0.1, "hispanic": 0.25,
                             "other": 0.1},
          "region": {"northeast": 0.2, "midwest": 0.2, "south": 0.35, "west": 0.25},
          "education": {"less_than_high_school": 0.1, "high_school": 0.25, "some_college": 0.2,
                        "associates": 0.1, "bachelors": 0.2, "postgraduate": 0.15},
          "ideology": {"very_conservative": 0.1, "conservative": 0.25, "moderate": 0.3,
                       "liberal": 0.25, "very_liberal": 0.1}}


def make_population(db: Path, people: int) -> str:
    """A seeded template population over ``SHARES`` in ``db``; returns its id."""
    return template_population(db, people, SHARES)


def price(engine: str, llm: str, personas: int, questions: int, ks: list[int]) -> None:
    import personahub

    with tempfile.TemporaryDirectory() as tmp:
        db, survey = Path(tmp) / "bench.duckdb", Path(tmp) / "survey.csv"
        write_survey(survey, questions)
        population = make_population(db, personas)
        began = time.perf_counter()
        job = personahub.calibrate(str(survey), population=population, db=db, llm=llm,
                                   n=personas // 2, no_persona_n=0, seed=0, archetypes=ks,
                                   concurrency=64, batch_size=4096, timeout_s=600)
        wall = time.perf_counter() - began
        table = job.archetype_price()
        summary = job.summary
    answers = summary.personas * summary.questions
    print(f"{engine}: {summary.personas} personas x {summary.questions} questions, "
          f"{summary.asks} calls, {summary.failed} failed, {wall:.1f} s; per-agent sample "
          f"{summary.calls.get('sample', 0)} calls")
    for k in ks:
        part = table[table["k"] == k]
        calls = summary.calls.get(f"archetypes:{k}", 0)
        print(f"PRICE engine={engine} k={k} calls={calls} calls_per_answer={calls / answers:.4f} "
              f"similarity={part['similarity'].mean():.3f} tvd={part['tvd'].mean():.3f} "
              f"refusal={part['archetype_refusal'].mean():.3f} "
              f"sample_refusal={part['sample_refusal'].mean():.3f}")
        for row in part.itertuples(index=False):
            print(f"  GROUP {row.attribute}={row.group} similarity={row.similarity:.3f} "
                  f"tvd={row.tvd:.3f} refusal={row.archetype_refusal:.3f} "
                  f"sample_refusal={row.sample_refusal:.3f} floor={row.human_resample:.3f}")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _group(n: int, k: int, out: Any) -> None:
    from personahub.personas.archetypes import group_archetypes

    rng = random.Random(0)
    texts = [f"A {rng.choice(TRAITS)} {rng.choice(ROLES)} from {rng.choice(PLACES)} who likes "
             f"{rng.choice(HOBBIES)} and {rng.choice(HOBBIES)}." for _ in range(n)]
    sexes, parties = ("female", "male"), ("democrat", "republican", "independent")
    ages = ("18-29", "30-49", "50-64", "65+")
    attributes = [{"sex": rng.choice(sexes), "party": rng.choice(parties),
                   "age": rng.choice(ages)} for _ in range(n)]
    before = _rss_mb()
    began = time.perf_counter()
    grouped = group_archetypes(texts, attributes, k, seed=0)
    out.put((time.perf_counter() - began, before, _rss_mb(), len(grouped)))


def scale(n: int, k: int = 100) -> None:
    context = mp.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_group, args=(n, k, out))
    child.start()
    seconds, before, peak, made = out.get(timeout=3600)
    child.join()
    print(f"SCALE personas={n} k={k} archetypes={made} seconds={seconds:.1f} "
          f"rss_before_mb={before:.0f} peak_rss_mb={peak:.0f}")


def _peak_kb(pid: int) -> int:
    """The process's peak RSS in KiB (``VmHWM``), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class RayMemory:
    """Samples, every ``every`` seconds until ``stop()``, the peak RSS of each process under this
    one (a local Ray's GCS, raylet and ``ray::`` workers): ``peaks`` maps pid to (name, KiB)."""

    def __init__(self, every: float = 0.5) -> None:
        import threading

        self.peaks: dict[int, tuple[str, int]] = {}
        self._done = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil  # type: ignore[import-untyped]  # with ray (its dependency), not ours

        me = psutil.Process()
        while True:
            for child in me.children(recursive=True):
                try:
                    name = " ".join(child.cmdline()[:1]) or child.name()
                except psutil.Error:
                    continue
                _, before = self.peaks.get(child.pid, (name, 0))
                self.peaks[child.pid] = (name, max(before, _peak_kb(child.pid)))
            if self._done.wait(self._every):
                return

    def stop(self) -> dict[str, float]:
        """Stop sampling; the workers' count and summed peak (idle pooled workers included), the
        largest worker's, the run's call actors' (``ray::_CallActor``) count and summed peak, and
        the raylet's and GCS's peaks, in MB."""
        self._done.set()
        self._thread.join()
        workers = [kb for name, kb in self.peaks.values() if name.startswith("ray::")]
        other = {"raylet": 0, "gcs_server": 0}
        for name, kb in self.peaks.values():
            for key in other:
                if key in name:
                    other[key] = max(other[key], kb)
        actors = [kb for name, kb in self.peaks.values() if name.startswith("ray::_CallActor")]
        return {"workers": len(workers), "workers_peak_rss_mb": sum(workers) / 1024,
                "largest_worker_mb": max(workers, default=0) / 1024,
                "call_actors": len(actors), "call_actors_peak_rss_mb": sum(actors) / 1024,
                "raylet_mb": other["raylet"] / 1024, "gcs_mb": other["gcs_server"] / 1024}


def _society(n: int, k: int | None, activation: float, steps: int, llm: str, out: Any,
             executor: str = "local") -> None:
    """One society run of ``n`` agents (``k`` archetypes, or every agent asked when None): two
    unaddressed kinds and a choice survey to everyone each step; per step its calls, active
    agents, answers and drawn answers, then the run's wall time and this process's peak RSS (on
    Ray, also its workers' peaks: ``RayMemory``)."""
    import json as json_

    import duckdb

    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    rng = random.Random(0)
    sexes, parties = ("female", "male"), ("democrat", "republican", "independent")
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        people = base / "people.jsonl"
        with people.open("w", encoding="utf-8") as f:
            for i in range(n):
                text = (f"A {rng.choice(TRAITS)} {rng.choice(ROLES)} from {rng.choice(PLACES)} "
                        f"who likes {rng.choice(HOBBIES)} (resident no. {i}).")
                f.write(json_.dumps({"persona": text, "sex": rng.choice(sexes),
                                     "party": rng.choice(parties)}) + "\n")
        scenario_file = base / "society.py"
        scenario_file.write_text(
            "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey\n"
            f"SCENARIO = Scenario(name='archetypes', personas=PersonaSource(path={str(people)!r}),"
            f" graph=GraphGrowth(hops=0, acquaintances=4), steps={steps},"
            f" activation={activation}, seed=1, tasks=('instruction', 'tool_spec'),"
            f" archetypes={k!r},"
            " surveys=(Survey(id='ferry', question='Should the town keep the ferry?',"
            f" steps=tuple(range(1, {steps} + 1)), options=('yes', 'no', 'unsure')),),"
            " world='A river town with a ferry, a market and a library.')\n", encoding="utf-8")
        scenario = load_scenario(scenario_file)
        memory: RayMemory | None = None
        if executor == "ray":  # a local Ray under this process, so its workers are found
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            memory = RayMemory()
        began = time.perf_counter()
        run_simulation(RunConfig(scenario=scenario, db=base / "society.duckdb", llm=llm,
                                 executor=executor))
        seconds = time.perf_counter() - began
        ray_memory = memory.stop() if memory is not None else None
        if executor == "ray":
            ray.shutdown()
        con = duckdb.connect(str(base / "society.duckdb"), read_only=True)
        per_step = con.execute(
            "SELECT s.step, s.n_active, s.n_answers, s.n_archetype_calls, s.n_drawn, "
            "(SELECT count(*) FROM llm_calls c WHERE c.run_id = s.run_id AND c.step = s.step) "
            "FROM steps s ORDER BY s.step").fetchall()
        shares = con.execute(
            "SELECT p.attributes->>'sex' AS sex, a.answer_choice, count(*) FROM survey_answers a "
            "JOIN personas p USING (persona_id) WHERE a.step = 1 GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        con.close()
    out.put((seconds, _rss_mb(), per_step, shares, ray_memory))


def society(n: int, k: int | None, activation: float, steps: int = 2, llm: str = "offline",
            engine: str = "offline", executor: str = "local") -> tuple[float, float]:
    """``_society`` in a fresh child process (its peak RSS is the run's own); returns the run's
    wall time and the driver's peak RSS in MB."""
    context = mp.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_society, args=(n, k, activation, steps, llm, out, executor))
    child.start()
    seconds, peak, per_step, shares, ray_memory = out.get(timeout=7200)
    child.join()
    for step, active, answers, arch_calls, drawn, calls in per_step:
        print(f"RUN engine={engine} agents={n} archetypes={k} step={step} active={active} answers={answers} "
              f"calls={calls} archetype_calls={arch_calls} drawn={drawn} "
              f"calls_per_active={calls / max(active, 1):.4f}")
    total: dict[str, int] = {}
    for sex, _, count in shares:
        total[sex] = total.get(sex, 0) + count
    print(f"RUN engine={engine} agents={n} archetypes={k} seconds={seconds:.1f} peak_rss_mb={peak:.0f} "
          "step-1 shares: " + "; ".join(f"{sex}/{answer} {count / total[sex]:.3f}"
                                        for sex, answer, count in shares))
    if ray_memory is not None:
        print(f"RAY agents={n} archetypes={k} driver_peak_rss_mb={peak:.0f} "
              + " ".join(f"{key}={value:.0f}" for key, value in ray_memory.items()))
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=1200)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--k", type=int, action="append", default=None)
    parser.add_argument("--scale", type=int, action="append", default=None)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--run", type=int, action="append", default=None,
                        help="agents of a society run with --run-k archetypes (repeatable)")
    parser.add_argument("--run-k", type=int, default=100)
    parser.add_argument("--activation", type=float, default=0.1)
    parser.add_argument("--per-agent", action="store_true",
                        help="also run each --run size without archetypes (the baseline)")
    parser.add_argument("--only-runs", action="store_true", help="skip parts 1 and 2")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: also run each --run size on Ray, beside the local run")
    args = parser.parse_args()
    for n in args.run or []:
        local_s, local_mb = society(n, args.run_k, args.activation)
        if args.executor == "ray":
            ray_s, ray_mb = society(n, args.run_k, args.activation, engine="ray", executor="ray")
            print(f"RATIO ray/local agents={n} archetypes={args.run_k} "
                  f"seconds={ray_s / local_s:.2f} driver_peak_rss={ray_mb / local_mb:.2f}")
        if args.per_agent:
            society(n, None, args.activation)
        if not args.no_server:  # the same society through the loopback server
            from personahub.models.fake_server.server import running_server

            with running_server(seed=0) as server:
                society(n, args.run_k, args.activation, llm=server.base_url + "?model=offline",
                        engine="server")
    if args.only_runs:
        return
    ks = args.k or [10, 100, 1000]
    price("offline", "offline", args.personas, args.questions, ks)
    if not args.no_server:
        from personahub.models.fake_server.server import running_server

        with running_server(seed=0) as server:
            price("server", server.base_url + "?model=offline", args.personas, args.questions,
                  ks)
    for n in args.scale or [100_000, 1_000_000]:
        scale(n)


if __name__ == "__main__":
    main()
