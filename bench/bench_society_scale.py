"""A society whose population lives in column shards, at scale: step time, memory, calls, rows.

    python bench/bench_society_scale.py [--agents 100000 --agents 1000000 ...] [--k 100]
                                        [--activation 0.1] [--steps 2] [--agents-path N ...]
                                        [--ray] [--nodes 2] [--shards 4]
                                        [--keep-setup DIR]

Per size: a template population (sex, party) in a JSONL file, the scenario of
``bench_archetypes.py``'s part 3 (two unaddressed kinds, a three-option survey to everyone each
step, ``--activation``, ``--k`` archetypes, offline engine). Each run happens in two spawned
children so the driver's figures are a step's, not setup's:

1. setup: ``run --society columns`` with a client that is unreachable from step 1, so the run
   imports, links, groups and records its agents, then stops resumable before step 1;
2. steps: ``resume_run`` of that run (locally, or with ``--ray`` on a local multi-node cluster,
   ``ray.cluster_utils.Cluster``, ``--nodes`` nodes of one CPU each, one shard per node unless
   ``--shards``): the resumed driver reads no agent; its peak RSS (``ru_maxrss``) is the
   driver's; every Ray worker's peak (``VmHWM``) is sampled.

``--keep-setup DIR`` keeps each size's setup in ``DIR`` and steps a copy of it, so a later
invocation (another tree, a before and after) steps the same setup without running it again.

``--agents-path N`` runs today's ``SocietyModel`` path on N agents in the same invocation (one
child: setup and steps), for the speed ratio. Lines: ``SETUP``, ``STEP``, ``RUN``, ``WORKER``.

``--check-tables`` (per size, instead of the figures above): one setup, copied; its steps run
locally and on a local Ray cluster (held by this process, so that a driver can die and another
resume), and the two databases' tables are compared row for row (``steps``, ``emissions``,
``survey_answers``, ``agent_states``, ``llm_calls`` not discarded, less their timing columns). With
``--kill-mid-step`` a third copy's Ray driver is killed (``SIGKILL``) once step 2's shard files
exist (step 1 committed), then resumed on the cluster, and compared too. Lines: ``TABLES``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _synthetic import HOBBIES, PLACES, ROLES, TRAITS  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_society(base: Path, n: int, k: int, activation: float, steps: int) -> Path:
    """The persona file and scenario of ``n`` template people; returns the scenario file."""
    rng = random.Random(0)
    people = base / "people.jsonl"
    with people.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = (f"A {rng.choice(TRAITS)} {rng.choice(ROLES)} from {rng.choice(PLACES)} "
                    f"who likes {rng.choice(HOBBIES)} (resident no. {i}).")
            f.write(json.dumps({"persona": text, "sex": rng.choice(("female", "male")),
                                "party": rng.choice(("democrat", "republican", "independent"))})
                    + "\n")
    scenario = base / "society.py"
    scenario.write_text(
        "from personahub.sim.scenario import GraphGrowth, PersonaSource, Scenario, Survey\n"
        f"SCENARIO = Scenario(name='scale', personas=PersonaSource(path={str(people)!r}),"
        f" graph=GraphGrowth(hops=0, acquaintances=4), steps={steps},"
        f" activation={activation}, seed=1, tasks=('instruction', 'tool_spec'), archetypes={k},"
        " surveys=(Survey(id='ferry', question='Should the town keep the ferry?',"
        f" steps=tuple(range(1, {steps} + 1)), options=('yes', 'no', 'unsure')),),"
        " world='A river town with a ferry, a market and a library.')\n", encoding="utf-8")
    return scenario


def _free_port() -> int:
    """A free TCP port on 127.0.0.1 for the cluster's head (another local cluster may hold 6379)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster(nodes: int, attempts: int = 3) -> Any:
    """Start a local cluster of ``nodes`` one-CPU nodes; a node that does not register within
    Ray's 30 s (a loaded machine) is tried again from a fresh cluster."""
    from ray.cluster_utils import Cluster

    for attempt in range(attempts):
        cluster = None
        try:
            cluster = Cluster(initialize_head=True,
                              head_node_args={"num_cpus": 1, "gcs_server_port": _free_port()})
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1)
            return cluster
        except Exception as exc:  # Ray raises a bare Exception on a node's startup timeout
            if cluster is not None:
                cluster.shutdown()
            if attempt == attempts - 1:
                raise
            print(f"RAY the cluster did not start ({exc}); trying again", flush=True)
    raise AssertionError("unreachable")


def _per_step(db: Path) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT s.step, s.n_active, s.n_archetype_calls, s.n_emissions, s.n_answers, "
            "epoch(s.finished_at - s.started_at), "
            "(SELECT count(*) FROM llm_calls c WHERE c.run_id = s.run_id AND c.step = s.step), "
            "(SELECT count(*) FROM agent_states a WHERE a.run_id = s.run_id AND a.step = s.step) "
            "FROM steps s ORDER BY s.step").fetchall()
    finally:
        con.close()


def _setup(scenario: str, db: str, out: Any) -> None:
    from personahub.api import run_simulation
    from personahub.core.errors import PersonahubError
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario
    from tests.fakes import FakeClient, unreachable_from_step

    began = time.perf_counter()
    error = "no error"
    try:
        run_simulation(RunConfig(scenario=load_scenario(scenario), db=Path(db), society="columns"),
                       client=FakeClient(unreachable_from_step(1), seed=1))
    except PersonahubError as exc:  # expected: the client is unreachable from step 1
        error = str(exc).splitlines()[0]
    import duckdb

    from personahub.sim.store import agent_count, archetype_representatives

    con = duckdb.connect(db, read_only=True)
    row = con.execute("SELECT run_id FROM runs").fetchone()
    assert row is not None, "the setup recorded no run"
    run_id = row[0]
    finished = agent_count(con, run_id) > 0 and bool(archetype_representatives(con, run_id))
    con.close()
    if not finished:  # a setup that failed before step 1 would be redone by the steps child
        raise SystemExit(f"the setup did not record its agents and archetypes: {error}")
    out.put((run_id, time.perf_counter() - began, _rss_mb()))


def _steps(db: str, run_id: str, ray_nodes: int, shards: int | None, out: Any) -> None:
    from personahub.api import resume_run

    workers: dict[str, float] = {}
    cluster = None
    if ray_nodes:
        import ray

        cluster = _cluster(ray_nodes)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        from bench_archetypes import RayMemory

        memory = RayMemory()
    began = time.perf_counter()
    options: dict[str, Any] = {"executor": "ray", "ray_workers": ray_nodes} if ray_nodes else {}
    if shards:
        options["shards"] = shards
    from personahub.pipelines.run import RunConfig  # noqa: F401  imported before timing ends

    marks: list[float] = []
    resume_run(run_id, db=db, progress=lambda phase, done, total: marks.append(time.perf_counter()),
               **options)
    seconds = time.perf_counter() - began
    commits = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    if ray_nodes:
        import ray

        peaks = memory.stop()
        workers = {f"{name} {pid}": kb / 1024 for pid, (name, kb) in memory.peaks.items()
                   if name.startswith("ray::")}
        workers["_summary"] = peaks["workers_peak_rss_mb"]
        ray.shutdown()
        assert cluster is not None
        cluster.shutdown()
    out.put((seconds, _rss_mb(), {**workers, "_commits": commits}))


def _agents_path(scenario: str, db: str, out: Any) -> None:
    from personahub.api import run_simulation
    from personahub.pipelines.run import RunConfig
    from personahub.sim.scenario import load_scenario

    began = time.perf_counter()
    marks: list[float] = []
    run_simulation(RunConfig(scenario=load_scenario(scenario), db=Path(db)),
                   progress=lambda phase, done, total: marks.append(time.perf_counter()))
    out.put((time.perf_counter() - began, _rss_mb(),
             [b - a for a, b in zip(marks, marks[1:], strict=False)]))


def _child(target: Any, *args: Any) -> Any:
    context = mp.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=target, args=(*args, out))
    child.start()
    began = time.monotonic()
    while True:  # a child that died without an answer (Ray failed to start) ends the bench
        try:
            found = out.get(timeout=5)
            break
        except queue.Empty:
            if not child.is_alive() or time.monotonic() - began > 4 * 3600:
                child.join(timeout=5)
                raise SystemExit(f"{target.__name__} ended without an answer "
                                 f"(exit code {child.exitcode})") from None
    child.join()
    return found


def _print_steps(label: str, n: int, db: Path) -> None:
    for step, active, pooled, emitted, answers, seconds, calls, states in _per_step(db):
        print(f"STEP path={label} agents={n} step={step} seconds={seconds:.2f} active={active} "
              f"calls={calls} archetype_calls={pooled} emissions={emitted} answers={answers} "
              f"agent_states={states}", flush=True)


def _kept_setup(n: int, k: int, activation: float, steps: int,
                keep: Path | None, folder: Path) -> tuple[Path, str]:
    """Return a copy (in ``folder``) of a size's setup database and its run id: the setup run in
    ``keep/agents-N`` when that holds none yet (or in ``folder`` without ``keep``), so that
    later invocations step the same setup without paying for it again."""
    base = keep / f"agents-{n}-k{k}-a{activation}-s{steps}" if keep else folder
    base.mkdir(parents=True, exist_ok=True)
    db = base / "society.duckdb"
    done = base / "run_id"
    if not done.exists():
        shutil.rmtree(Path(f"{db}.jobs"), ignore_errors=True)
        db.unlink(missing_ok=True)
        Path(f"{db}.wal").unlink(missing_ok=True)
        scenario = write_society(base, n, k, activation, steps)
        run_id, setup_s, setup_mb = _child(_setup, str(scenario), str(db))
        print(f"SETUP agents={n} seconds={setup_s:.1f} peak_rss_mb={setup_mb:.0f}", flush=True)
        done.write_text(run_id, encoding="utf-8")
    else:
        print(f"SETUP agents={n} kept in {base}", flush=True)
    run_id = done.read_text(encoding="utf-8")
    return (_copy(db, folder / "steps.duckdb") if keep else db), run_id


def columns(n: int, k: int, activation: float, steps: int, ray_nodes: int,
            shards: int | None, keep: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db, run_id = _kept_setup(n, k, activation, steps, keep, Path(folder))
        seconds, driver_mb, workers = _child(_steps, str(db), run_id, ray_nodes, shards)
        label = f"columns-ray-{ray_nodes}nodes" if ray_nodes else "columns-local"
        _print_steps(label, n, db)
        between = workers.pop("_commits")
        print(f"WALL path={label} agents={n} from_one_commit_to_the_next_s="
              + ",".join(f"{x:.2f}" for x in between), flush=True)
        print(f"RUN path={label} agents={n} steps_seconds={seconds:.1f} "
              f"driver_peak_rss_mb={driver_mb:.0f}"
              + (f" workers_peak_rss_mb_sum={workers.pop('_summary'):.0f}" if workers else ""),
              flush=True)
        for name, mb in sorted(workers.items()):
            print(f"WORKER agents={n} {name} peak_rss_mb={mb:.0f}", flush=True)


#: columns of the compared tables that differ between two runs of the same seed: when they ran
#: and how long they took, and the call's endpoint (which actor asked it)
TIMING = {"started_at", "finished_at", "latency_ms", "queue_ms", "endpoint", "call_id"}
COMPARED = ("steps", "emissions", "survey_answers", "agent_states", "llm_calls")


def _count(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None, sql
    return int(row[0])


def compare_tables(one: Path, other: Path) -> dict[str, tuple[int, int, int]]:
    """Per table, its rows in ``one``, in ``other``, and the rows in one and not the other (both
    ways, duplicates counted), less ``TIMING`` columns; of ``llm_calls`` the calls not discarded
    (a resume keeps the calls a killed step paid for, as ``discarded``)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{one}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{other}' AS b (READ_ONLY)")
        found = {}
        for table in COMPARED:
            columns = ", ".join(name for (name,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'a' "
                "AND table_name = ? ORDER BY column_index", [table]).fetchall()
                if name not in TIMING)
            kept = " WHERE status <> 'discarded'" if table == "llm_calls" else ""
            a, b = (f"(SELECT {columns} FROM {db}.{table}{kept})" for db in ("a", "b"))
            rows = [_count(con, f"SELECT count(*) FROM {x}") for x in (a, b)]
            apart = _count(con, f"SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b})) "
                                f"+ (SELECT count(*) FROM ({b} EXCEPT ALL {a}))")
            found[table] = (rows[0], rows[1], apart)
        return found
    finally:
        con.close()


def _resume(db: str, run_id: str, address: str | None, workers: int, shards: int | None,
            out: Any) -> None:
    """Run a copied setup's steps (locally, or on the cluster at ``address``); tells ``out`` when
    they ended."""
    from personahub.api import resume_run

    options: dict[str, Any] = ({"executor": "ray", "ray_address": address, "ray_workers": workers}
                               if address else {})
    if shards:
        options["shards"] = shards
    resume_run(run_id, db=db, **options)
    out.put(_rss_mb())


def _copy(db: Path, to: Path) -> Path:
    shutil.copy(db, to)
    if Path(f"{db}.wal").exists():
        shutil.copy(f"{db}.wal", f"{to}.wal")
    return to


def _steps_done(db: Path) -> int:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return _count(con, "SELECT steps_done FROM runs")
    finally:
        con.close()


def _kill_mid_step(db: Path, run_id: str, address: str, workers: int,
                   shards: int | None) -> float:
    """Run the steps on Ray and ``SIGKILL`` the driver once step 2's shard files exist; returns
    the seconds from the start to the kill."""
    context = mp.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_resume, args=(str(db), run_id, address, workers, shards, out))
    began = time.perf_counter()
    child.start()
    step_2 = Path(f"{db}.jobs") / run_id / "step-2"
    while child.is_alive() and not (step_2.is_dir() and any(step_2.iterdir())):
        time.sleep(0.01)
    seconds = time.perf_counter() - began
    assert child.pid is not None and child.is_alive(), "the steps ended before step 2's files"
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    return seconds


def _print_tables(label: str, n: int, found: dict[str, tuple[int, int, int]]) -> None:
    same = all(apart == 0 and a == b for a, b, apart in found.values())
    print(f"TABLES {label} agents={n} {'equal' if same else 'DIFFERENT'} "
          + " ".join(f"{t}={a}/{b}/apart={apart}" for t, (a, b, apart) in found.items()),
          flush=True)


def check_tables(n: int, k: int, activation: float, steps: int, nodes: int, shards: int | None,
                 kill: bool) -> bool:
    """Compare a Ray run's tables (and, with ``kill``, a killed and resumed one's) with the local
    run's, all from one setup; True when every table is equal."""
    import ray

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        scenario = write_society(base, n, k, activation, steps)
        setup = base / "setup.duckdb"
        run_id, setup_s, _ = _child(_setup, str(scenario), str(setup))
        print(f"SETUP agents={n} seconds={setup_s:.1f}", flush=True)
        local = _copy(setup, base / "local.duckdb")
        _child(_resume, str(local), run_id, None, 0, None)
        cluster = _cluster(nodes)
        try:
            on_ray = _copy(setup, base / "ray.duckdb")
            _child(_resume, str(on_ray), run_id, cluster.address, nodes, shards)
            found = compare_tables(local, on_ray)
            _print_tables("local_vs_ray", n, found)
            same = all(apart == 0 and a == b for a, b, apart in found.values())
            if kill:
                killed = _copy(setup, base / "killed.duckdb")
                seconds = _kill_mid_step(killed, run_id, cluster.address, nodes, shards)
                done = _steps_done(killed)
                print(f"KILL agents={n} killed_after_s={seconds:.2f} steps_committed={done}",
                      flush=True)
                _child(_resume, str(killed), run_id, cluster.address, nodes, shards)
                found = compare_tables(local, killed)
                _print_tables("local_vs_ray_killed_and_resumed", n, found)
                same = same and done == 1 and all(
                    apart == 0 and a == b for a, b, apart in found.values())
        finally:
            ray.shutdown()
            cluster.shutdown()
        return same


def agents_path(n: int, k: int, activation: float, steps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        scenario = write_society(base, n, k, activation, steps)
        db = base / "society.duckdb"
        seconds, peak, between = _child(_agents_path, str(scenario), str(db))
        _print_steps("agents", n, db)
        print(f"WALL path=agents agents={n} from_one_commit_to_the_next_s="
              + ",".join(f"{x:.2f}" for x in between), flush=True)
        print(f"RUN path=agents agents={n} seconds={seconds:.1f} peak_rss_mb={peak:.0f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, action="append", default=None)
    parser.add_argument("--agents-path", type=int, action="append", default=[],
                        help="also run today's SocietyModel path on N agents")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--activation", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also run each size on local Ray")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument("--no-local", action="store_true")
    parser.add_argument("--keep-setup", type=Path, default=None, metavar="DIR",
                        help="keep each size's setup in DIR and step a copy of it (reused)")
    parser.add_argument("--check-tables", action="store_true",
                        help="compare the local and Ray runs' tables instead of the figures")
    parser.add_argument("--kill-mid-step", action="store_true",
                        help="with --check-tables: kill -9 a Ray driver in step 2, resume, compare")
    args = parser.parse_args()
    if args.kill_mid_step and not args.check_tables:
        parser.error("--kill-mid-step needs --check-tables")
    if args.check_tables:
        same = [check_tables(n, args.k, args.activation, args.steps, args.nodes, args.shards,
                             args.kill_mid_step) for n in args.agents or [100_000]]
        sys.exit(0 if all(same) else 1)
    for n in args.agents or [100_000]:
        if not args.no_local:
            columns(n, args.k, args.activation, args.steps, 0, args.shards, args.keep_setup)
        if args.ray:
            columns(n, args.k, args.activation, args.steps, args.nodes, args.shards,
                    args.keep_setup)
    for n in args.agents_path:
        agents_path(n, args.k, args.activation, args.steps)


if __name__ == "__main__":
    main()
