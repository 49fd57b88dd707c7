"""Ray executor vs local: one synthesis job, one text-to-persona job, one expansion, one scenario
run and one MinHash dedup stage, local then Ray with 1 and 2 workers, in the same run (speedup =
local seconds / Ray seconds; > 1 is faster), with each job's model calls per second (the
per-call figure docs/scale.md projects a million items from).

Needs the [ray] extra. Starts its own local Ray (127.0.0.1, no dashboard, --cpus CPUs) and
reports its start-up separately: a job pays it once per cluster, not per batch. The synthesis job
uses the offline engine with --latency seconds per call (a model endpoint's wait; 0 measures the
overhead alone); ``--concurrency`` holds per worker, as it does on Ray. Rows, hubs and flags are
checked equal to the local run's before any figure is printed. The scenario run
(--run-agents agents, every one acting each of --run-steps steps) uses the offline engine with
--run-latency seconds per call; the offline engine has no concurrency limit, so a step's calls
all wait at once and the figure is mostly the per-call work (prompts, answers, validation,
commits) and what shipping calls to actors costs. Its tables are checked equal too.

    python bench/bench_ray.py                      # the default figures (dedup of 100,000)
    python bench/bench_ray.py --dedup-n 1000000    # the 1M-persona dedup figure
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import _synthetic  # noqa: F401 - puts this checkout first on sys.path
import duckdb
import numpy as np
import pyarrow as pa


def synth_db(path: Path, n: int) -> Path:
    from personahub.core.store import connect, transaction
    from personahub.personas.importers import iter_personas
    from personahub.personas.store import upsert_personas

    people = _synthetic.write_personas(path.with_suffix(".jsonl"), n)
    con = connect(path)
    with transaction(con):
        upsert_personas(con, iter_personas(str(people), source="bench"))
    con.close()
    return path


def synth_rows(db: Path, job_id: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT persona_id, content, solution, is_duplicate FROM synth_items "
                       "WHERE job_id = ? ORDER BY persona_id", [job_id]).fetchall()
    con.close()
    return rows


def time_synthesis(tmp: Path, args: argparse.Namespace, executor: str,
                   workers: int | None) -> tuple[float, list[tuple]]:
    from personahub.api import run_synthesis
    from personahub.models.client import LLMSettings, make_client
    from personahub.pipelines.synthesize import SynthConfig

    db = synth_db(tmp / f"synth-{executor}-{workers}.duckdb", args.n)
    client = make_client(LLMSettings(concurrency=args.concurrency, offline_latency_s=args.latency))
    options = SynthConfig(task="math_problem", n=args.n, solve=True, db=str(db),
                           batch_size=args.batch_size, concurrency=args.concurrency,
                           executor=executor, ray_workers=workers)
    t0 = time.perf_counter()
    summary = run_synthesis(options, client=client)
    return time.perf_counter() - t0, synth_rows(db, summary.job_id)


def run_tables(db: Path, run_id: str) -> list[tuple]:
    """A run's emissions and agent states (run ids masked: two runs compare)."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT step, agent_id, task, content, text, is_duplicate FROM emissions "
                       "WHERE run_id = ? ORDER BY step, agent_id", [run_id]).fetchall()
    rows += [(step, state.replace(run_id, "RUN")) for step, state in con.execute(
        "SELECT step, state FROM agent_states WHERE run_id = ? ORDER BY step, agent_id",
        [run_id]).fetchall()]
    con.close()
    return rows


def time_run(tmp: Path, args: argparse.Namespace, executor: str,
             workers: int | None) -> tuple[float, list[tuple]]:
    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    people = _synthetic.write_personas(tmp / "run-people.jsonl", args.run_agents)
    scenario = load_scenario(_synthetic.write_scenario(tmp / "run_bench.py", people,
                                                       steps=args.run_steps))
    db = tmp / f"run-{executor}-{workers}.duckdb"
    options = RunConfig(scenario=scenario, db=db, offline_latency_s=args.run_latency,
                        executor=executor, ray_workers=workers)
    t0 = time.perf_counter()
    summary = run_simulation(options)
    return time.perf_counter() - t0, run_tables(db, summary.run_id)


def persona_db(path: Path, n: int, texts: Path | None = None) -> Path:
    """A hub of ``n`` personas (the expansion's start) and a corpus of ``n`` texts."""
    db = synth_db(path, n)
    if texts is not None:
        texts.write_text("".join(f'{{"id": "t{i}", "text": "Text {i}: a note by a '
                                 f'{_synthetic.ROLES[i % len(_synthetic.ROLES)]} about '
                                 f'{_synthetic.HOBBIES[i % len(_synthetic.HOBBIES)]}, detail '
                                 f'{i * 7}."}}\n' for i in range(n)))
    return db


def hub_of(db: Path) -> tuple[list[tuple], int]:
    """The hub (personas, relations) a persona job left, and the model calls it made."""
    con = duckdb.connect(str(db), read_only=True)
    hub = con.execute("SELECT persona_id, text FROM personas ORDER BY ALL").fetchall() \
        + con.execute("SELECT src, dst, relation FROM relations ORDER BY ALL").fetchall()
    calls = con.execute("SELECT count(*) FROM llm_calls").fetchall()[0][0]
    con.close()
    return hub, calls


def time_persona_job(tmp: Path, args: argparse.Namespace, job: str,
                     workers: int | None) -> tuple[float, list[tuple], int]:
    """``from-text`` over ``--persona-n`` texts (read, like) or ``expand`` (1 hop, fanout 2,
    closing triangles) from ``--persona-n`` personas, local or on Ray with ``workers``."""
    from personahub import runtime
    from personahub.core.store import connect
    from personahub.models.client import LLMSettings, make_client
    from personahub.pipelines.expand import EXPANSION, ExpandConfig
    from personahub.pipelines.text_to_persona import TEXT_TO_PERSONA, TextConfig

    corpus = tmp / f"{job}-{workers}.jsonl"
    db = persona_db(tmp / f"{job}-{workers}.duckdb", args.persona_n, corpus)
    client = make_client(LLMSettings(concurrency=args.concurrency, offline_latency_s=args.latency))
    on_ray = {} if workers is None else {"executor": "ray", "ray_workers": workers}
    con = connect(db)
    t0 = time.perf_counter()
    if job == "from-text":  # the job spec: on Ray its batches go through one Ray Data pass
        runtime.run(TEXT_TO_PERSONA, TextConfig(corpus="c", path=str(corpus), id_column="id",
                                                relations=("read", "like"), db=str(db),
                                                batch_size=args.batch_size,
                                                concurrency=args.concurrency, **on_ray),
                    db, client=client, con=con)
    else:  # the expansion job spec, its calls on one actor pool for the whole expansion
        runtime.run(EXPANSION, ExpandConfig(db=str(db), hops=1, fanout=2, link_candidates=2,
                                            batch_size=args.batch_size * 4,
                                            concurrency=args.concurrency, **on_ray),
                    db, client=client, con=con)
    seconds = time.perf_counter() - t0
    con.close()
    hub, calls = hub_of(db)
    return seconds, hub, calls


def dedup_texts(n: int, seed: int = 3) -> list[str]:
    """Template personas, one in ten an earlier one with two words swapped (dedup has work)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for i in range(n):
        if texts and rng.random() < 0.1:
            words = rng.choice(texts).split()
            a, b = rng.sample(range(len(words)), 2)
            words[a], words[b] = words[b], words[a]
            texts.append(" ".join(words))
            continue
        texts.append(f"A {rng.choice(_synthetic.TRAITS)} {rng.choice(_synthetic.ROLES)} from "
                     f"{rng.choice(_synthetic.PLACES)}, aged {rng.randint(19, 80)}, who spends "
                     f"weekends on {rng.choice(_synthetic.HOBBIES)} and "
                     f"{rng.choice(_synthetic.HOBBIES)}, resident no. {i}.")
    return texts


def dedup_hub(texts: list[str]) -> duckdb.DuckDBPyConnection:
    from personahub.core.store import connect

    con = connect(":memory:")
    ids = [f"p{i:09d}" for i in range(len(texts))]
    con.register("incoming", pa.table({"persona_id": ids, "text": texts, "pos": np.arange(len(texts))}))
    con.execute("INSERT INTO personas (persona_id, text, source, gate) SELECT persona_id, text, "
                "'bench', 'passed' FROM incoming ORDER BY pos")
    con.unregister("incoming")
    return con


def time_dedup(texts: list[str], workers: int | None) -> tuple[float, list[tuple]]:
    from personahub.executors.ray_minhash import minhash_pair_finder
    from personahub.personas.dedup import DedupConfig, local_signatures, run_minhash_stage

    con = dedup_hub(texts)
    sign = local_signatures if workers is None else minhash_pair_finder(workers=workers)
    t0 = time.perf_counter()
    run_minhash_stage(con, DedupConfig(), sign=sign)
    seconds = time.perf_counter() - t0
    flags = con.execute("SELECT persona_id, duplicate_of FROM personas WHERE is_duplicate "
                        "ORDER BY persona_id").fetchall()
    con.close()
    return seconds, flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="personas in the synthesis job (0: skip)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per offline call")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--persona-n", type=int, default=400,
                        help="texts for from-text and start personas for expand (0: skip both)")
    parser.add_argument("--run-agents", type=int, default=2000,
                        help="agents of the scenario run (0: skip)")
    parser.add_argument("--run-steps", type=int, default=3)
    parser.add_argument("--run-latency", type=float, default=0.0, help="seconds per offline call")
    parser.add_argument("--dedup-n", type=int, default=100_000,
                        help="personas to dedup (0: skip; 1000000 for the figure in docs/scale.md)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args()

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, address="local", log_to_driver=False)
    ray_init = time.perf_counter() - t0
    print(f"local Ray start-up: {ray_init:.1f}s (once per cluster)")
    figures = {"ray_init_s": f"{ray_init:.1f}"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.n:
                local, rows = time_synthesis(Path(tmp), args, "local", None)
                calls = 2 * args.n
                print(f"synthesis {args.n} x math_problem --solve, {args.latency}s/call: local {local:.2f}s "
                      f"({calls / local:.0f} calls/s)")
                figures["synth_local_s"] = f"{local:.2f}"
                figures["synth_local_calls_per_s"] = f"{calls / local:.0f}"
                for workers in (1, 2):
                    seconds, got = time_synthesis(Path(tmp), args, "ray", workers)
                    assert got == rows, "Ray synthesis rows differ from the local run's"
                    print(f"  ray {workers} worker(s): {seconds:.2f}s ({calls / seconds:.0f} calls/s), "
                          f"speedup {local / seconds:.2f}")
                    figures[f"synth_ray{workers}_speedup"] = f"{local / seconds:.2f}"
                    figures[f"synth_ray{workers}_calls_per_s"] = f"{calls / seconds:.0f}"
            for job in ("from-text", "expand") if args.persona_n else ():
                local, hub, calls = time_persona_job(Path(tmp), args, job, None)
                key = job.replace("-", "_")
                what = "texts x 2 relations" if job == "from-text" else "personas, 1 hop"
                print(f"{job}, {args.persona_n} {what} ({calls} calls): local {local:.2f}s "
                      f"({calls / local:.0f} calls/s)")
                figures[f"{key}_local_s"] = f"{local:.2f}"
                for workers in (1, 2):
                    seconds, got, asked = time_persona_job(Path(tmp), args, job, workers)
                    assert (got, asked) == (hub, calls), f"Ray {job} hub differs from the local one"
                    print(f"  ray {workers} worker(s): {seconds:.2f}s ({calls / seconds:.0f} calls/s), "
                          f"speedup {local / seconds:.2f}")
                    figures[f"{key}_ray{workers}_speedup"] = f"{local / seconds:.2f}"
        if args.run_agents:
            with tempfile.TemporaryDirectory() as tmp:
                local, tables = time_run(Path(tmp), args, "local", None)
                print(f"scenario run, {args.run_agents} agents x {args.run_steps} steps, "
                      f"{args.run_latency}s/call: local {local:.2f}s")
                figures["run_local_s"] = f"{local:.2f}"
                for workers in (1, 2):
                    seconds, got = time_run(Path(tmp), args, "ray", workers)
                    assert got == tables, "Ray run tables differ from the local run's"
                    print(f"  ray {workers} worker(s): {seconds:.2f}s, speedup {local / seconds:.2f}")
                    figures[f"run_ray{workers}_speedup"] = f"{local / seconds:.2f}"
        if args.dedup_n:
            texts = dedup_texts(args.dedup_n)
            local, flags = time_dedup(texts, None)
            print(f"minhash stage, {args.dedup_n:,} personas ({len(flags):,} flagged): local {local:.2f}s")
            figures["dedup_local_s"] = f"{local:.2f}"
            for workers in (1, 2):
                seconds, got = time_dedup(texts, workers)
                assert got == flags, "Ray dedup flags differ from the local stage's"
                print(f"  ray {workers} worker(s): {seconds:.2f}s, speedup {local / seconds:.2f}")
                figures[f"dedup_ray{workers}_speedup"] = f"{local / seconds:.2f}"
            if args.dedup_n < 1_000_000:
                print("  the 1M-persona figure: python bench/bench_ray.py --persona-n 0 --n 200 "
                      "--dedup-n 1000000")
    finally:
        ray.shutdown()
    print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
