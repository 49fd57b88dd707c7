"""personahub run --executor ray: the step's model calls on Ray actors give every run table of a
local run with the same seed (offline and over HTTP, with 1 or 2 workers), a killed actor loses
and doubles nothing, and a run that lost its workers stops resumable.

The module starts its own local Ray on 127.0.0.1 (two CPUs, no dashboard) and shuts it down."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from personahub.api import resume_run, run_simulation
from personahub.core.errors import PersonahubError
from personahub.executors import ray_actors as executor_ray_run
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke
from tests.conftest import persona_texts
from tests.optional import need_ray
from tests.sim.test_resume import SCENARIO, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    """test_resume's scenario (events, interventions, a choice survey), 16 personas."""
    (tmp_path / "people.jsonl").write_text(
        "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(16)))
    path = tmp_path / "resumable.py"
    path.write_text(SCENARIO)
    return path


def run(path: Path, db: Path, **options: Any) -> dict[str, list]:
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db, **options))
    return snapshot(db, summary.run_id)


@pytest.mark.parametrize("workers", [1, 2])
def test_offline_run_on_ray_gives_the_local_tables(local_ray: None, scenario_path: Path,
                                                    tmp_path: Path, workers: int) -> None:
    local = run(scenario_path, tmp_path / "local.duckdb")
    remote = run(scenario_path, tmp_path / "ray.duckdb", executor="ray", ray_workers=workers)
    assert remote == local
    assert local["survey_answers"] and local["messages"] and local["emissions"]


def test_a_run_growing_its_graph_on_ray_with_a_worker_per_cpu_gives_the_local_tables(
        local_ray: None, scenario_path: Path, tmp_path: Path) -> None:
    """The setup expansion, a child job run from the run's first batch, asks through the run's
    actor pool: a pool of its own would wait for the CPUs the run's workers hold (one per CPU
    by default), and the run never ended."""
    grown = tmp_path / "grown.py"
    grown.write_text(SCENARIO.replace("GraphGrowth(hops=0,", "GraphGrowth(hops=1, fanout=2,"))
    local = run(grown, tmp_path / "local.duckdb")
    remote = run(grown, tmp_path / "ray.duckdb", executor="ray")  # ray_workers: one per CPU
    assert remote == local
    assert [1] == sorted({hop for _, hop in rows_of(tmp_path / "ray.duckdb",
                                                   "SELECT persona_id, hop FROM personas "
                                                   "WHERE hop > 0")})


def rows_of(db: Path, sql: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_loopback_server_run_on_ray_gives_the_local_tables(local_ray: None, scenario_path: Path,
                                                            tmp_path: Path, server: Any) -> None:
    """Over HTTP: ChatOpenAI on each worker, the same server, the same tables and accounting."""
    handle = server(seed=3)
    llm = handle.base_url + "?model=offline"
    local = run(scenario_path, tmp_path / "local.duckdb", llm=llm)
    remote = run(scenario_path, tmp_path / "ray.duckdb", llm=llm, executor="ray", ray_workers=2)
    assert remote == local and local["emissions"]


def cache_of(db: Path, run_id: str) -> dict[str, list]:
    """The run's calls by whether the cache answered them, and every stored cache entry."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "calls": con.execute("SELECT purpose, status, cached, attempt, count(*) FROM llm_calls "
                                 "WHERE run_id = ? GROUP BY ALL ORDER BY ALL", [run_id]).fetchall(),
            "entries": con.execute("SELECT key, model, sample, CAST(request AS VARCHAR), response, "
                                   "error, tokens_in, tokens_out FROM llm_cache ORDER BY key"
                                   ).fetchall()}
    finally:
        con.close()


def test_a_cached_run_on_ray_answers_from_the_drivers_cache(
        local_ray: None, scenario_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--cache record on Ray: the driver looks every call up in the database's cache and sends
    only the misses to the actors, storing the entries they bring back; run twice, the second
    run is answered from the cache, and both runs' tables and entries are a local cached run's.
    A replay on Ray (no model called) gives the same tables again."""
    sent: list[str] = []  # the misses the driver sent to an actor, by purpose
    send = executor_ray_run._Misses.call

    async def counted(self: Any, request: Any) -> Any:
        sent.append(request.purpose)
        return await send(self, request)

    monkeypatch.setattr(executor_ray_run._Misses, "call", counted)

    def twice(db: Path, **options: Any) -> list[tuple[dict[str, list], dict[str, list]]]:
        made = []
        for _ in range(2):
            summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, cache="record",
                                               **options))
            made.append((snapshot(db, summary.run_id), cache_of(db, summary.run_id)))
            sent.append("--")
        return made

    local = twice(tmp_path / "local.duckdb")
    remote = twice(tmp_path / "ray.duckdb", executor="ray", ray_workers=2)
    assert remote == local
    assert sent[:2] == ["--", "--"] and len(sent) > 4 and sent[-1] == sent[-2] == "--"
    assert len(sent) - 4 == sum(c[-1] for c in remote[0][1]["calls"])  # every call of the first
    (first, first_cache), (second, second_cache) = remote
    assert second == first and first["emissions"]
    assert {c[2] for c in first_cache["calls"]} == {False}  # the first run asked the actors
    assert {c[2] for c in second_cache["calls"]} == {True}  # the second, the cache alone
    assert second_cache["entries"] == first_cache["entries"] and first_cache["entries"]
    replay = run_simulation(RunConfig(scenario=load_scenario(scenario_path),
        db=tmp_path / "ray.duckdb", cache="replay", executor="ray", ray_workers=1))
    assert snapshot(tmp_path / "ray.duckdb", replay.run_id) == first


def _kill_first_actor(no_restart: bool) -> None:
    import ray

    names = sorted(n["name"] for n in ray.util.list_named_actors(all_namespaces=True)
                   if n["name"].startswith(executor_ray_run.ACTOR_PREFIX))
    assert names, "no run actor found"
    ray.kill(ray.get_actor(names[0]), no_restart=no_restart)


def test_an_actor_killed_mid_run_loses_and_doubles_nothing(local_ray: None, scenario_path: Path,
                                                            tmp_path: Path) -> None:
    """ray.kill an actor while step 2's calls are in flight (each offline call waits 0.2 s): Ray
    restarts it and asks its batch again; the tables and llm_calls are the local run's."""
    committed: list[int] = [0]
    killed_after: list[int] = []

    def kill() -> None:
        _kill_first_actor(False)
        killed_after.append(committed[-1])

    def kill_during_next_step(phase: str, done: int, total: int | None) -> None:
        if phase == "step":
            committed.append(done)
            if done == 1:
                threading.Timer(0.1, kill).start()

    local = run(scenario_path, tmp_path / "local.duckdb", offline_latency_s=0.2)
    db = tmp_path / "ray.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, executor="ray",
                                       ray_workers=2, offline_latency_s=0.2),
                             progress=kill_during_next_step)
    assert killed_after == [1]  # killed before step 2 was committed: its calls were in flight
    got = snapshot(db, summary.run_id)
    # an answer the actor finished before it died is billed (its spill): discarded, asked again
    got["llm_calls"] = [c for c in got["llm_calls"] if c[2] != "discarded"]
    assert got == local


def test_a_run_that_lost_its_workers_resumes_to_the_local_tables(
        local_ray: None, scenario_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no restarts left, a killed actor fails the step: the run stops after its last
    committed step, and --resume (on Ray again) ends with the local run's tables."""
    local = run(scenario_path, tmp_path / "local.duckdb")
    monkeypatch.setattr(executor_ray_run, "ACTOR_RESTARTS", 0)

    def kill_after_step_two(phase: str, done: int, total: int | None) -> None:
        if phase == "step" and done == 2:
            _kill_first_actor(True)

    db = tmp_path / "ray.duckdb"
    with pytest.raises(PersonahubError, match="lost .* resume with personahub run --resume"):
        run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, executor="ray", ray_workers=2),
                       progress=kill_after_step_two)
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    run_id, status, done = con.execute("SELECT run_id, status, steps_done FROM runs "
                                       "JOIN jobs ON job_id = run_id").fetchall()[0]
    con.close()
    assert (status, done) == ("failed", 2)
    monkeypatch.setattr(executor_ray_run, "ACTOR_RESTARTS", 3)
    resume_run(run_id, db=db, executor="ray", ray_workers=2)
    resumed = snapshot(db, run_id)
    # the failed step's calls that did answer were never committed, yet billed: the surviving
    # worker spilled them, and they are in llm_calls as discarded (core.call_spill)
    calls = resumed.pop("llm_calls")
    assert [c for c in calls if c[2] != "discarded"] == local.pop("llm_calls")
    assert {c[0] for c in calls if c[2] == "discarded"} <= {3}
    assert resumed == local


def test_the_cli_and_the_python_api_run_on_ray(local_ray: None, scenario_path: Path,
                                         tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    result = invoke("run", scenario_path, "--db", db, "--steps", 2, "--executor", "ray",
                    "--ray-workers", 2)
    assert result.exit_code == 0, result.output
    assert "survey answers" in result.output
    import personahub

    api = personahub.run_scenario(scenario_path, db=tmp_path / "api.duckdb", steps=2,
                                  executor="ray", ray_workers=1)
    assert snapshot(api.db, api.job_id)["steps"] == snapshot(db, _only_run(db))["steps"]


def _only_run(db: Path) -> str:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return str(con.execute("SELECT run_id FROM runs").fetchall()[0][0])
    finally:
        con.close()


def test_a_client_the_workers_cannot_rebuild_is_refused_before_the_run(
        scenario_path: Path, tmp_path: Path) -> None:
    need_ray()
    from tests.fakes import FakeClient

    db = tmp_path / "refused.duckdb"
    with pytest.raises(PersonahubError, match="built from --llm"):
        run_simulation(RunConfig(scenario=load_scenario(scenario_path), db=db, executor="ray"),
                       client=FakeClient())
    assert not db.exists()


def test_attempts_ray_workers_made_before_the_driver_was_killed_are_billed(
        local_ray: None, tmp_path: Path, server: Any) -> None:
    """``kill -9`` of a ``run --executor ray`` driver while its step's calls hang (each attempt
    cut at --timeout 1 and asked again): the attempts the workers finished were never shipped
    back (a Ray task returns when all its calls are done), yet each is in ``llm_calls`` after
    the resume, from the workers' spill files, once."""
    import os

    import duckdb
    import ray

    from tests.cli_helpers import kill_when
    from tests.sim.test_failure_exits import one_step_scenario

    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(4)))
    scenario = one_step_scenario(tmp_path, people)
    hung = server(hang_rate=1.0, hang_s=3600.0)
    db = tmp_path / "killed.duckdb"
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address  # the module's Ray
    try:
        kill_when(["run", str(scenario), "--db", str(db), "--llm", hung.base_url, "--timeout",
                   "1", "--executor", "ray", "--ray-workers", "1"],
                  lambda: hung.stats.hangs >= 12, "the run's calls never reached the server")
    finally:
        del os.environ["RAY_ADDRESS"]
    hangs = hung.stats.hangs  # attempts sent; at most one per call was still in flight
    con = duckdb.connect(str(db))
    try:
        (run_id,), = con.execute("SELECT run_id FROM runs").fetchall()
        assert con.execute("SELECT count(*) FROM llm_calls").fetchall() == [(0,)]
    finally:
        con.close()
    healthy = server()
    resumed = invoke("run", "--resume", run_id, "--db", db, "--llm", healthy.base_url)
    assert resumed.exit_code == 0, resumed.output
    con = duckdb.connect(str(db), read_only=True)
    try:
        calls = con.execute("SELECT status, error, call_id FROM llm_calls WHERE run_id = ?",
                            [run_id]).fetchall()
    finally:
        con.close()
    answered = sum(1 for status, _, _ in calls if status == "ok")
    timeouts = [c for c in calls if c[0] == "error" and c[1].startswith("timeout")]
    assert answered and len(timeouts) >= hangs - answered > 0
    assert len({c[2] for c in calls}) == len(calls)  # nothing doubled
    assert not list(tmp_path.glob("killed.duckdb.*.calls*"))


def test_an_archetype_run_on_ray_gives_the_local_tables_and_calls(local_ray: None,
                                                                   tmp_path: Path) -> None:
    """Archetypes on Ray: the archetypes' share and pool calls go through the
    actors like any other, so a seeded run's survey answers (drawn per member from its
    archetype's shares), emissions and steps are the local run's, and each step makes one call
    per archetype for its survey and one per archetype and kind, not one per agent."""
    from tests.sim.test_archetypes_run import N, _run, _scenario, _snapshot

    path = _scenario(tmp_path)
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    local = _snapshot(local_db, _run(path, local_db, steps=2))
    remote_id = _run(path, ray_db, steps=2, executor="ray", ray_workers=2)
    remote = _snapshot(ray_db, remote_id)
    assert remote == local
    archetypes = len(local["run_archetypes"])
    assert 1 < archetypes < N and len(local["survey_answers"]) == 2 * N
    calls = {(step, purpose): n for step, purpose, status, n in remote["llm_calls"]
             if status == "ok"}
    assert not [c for c in remote["llm_calls"] if c[2] != "ok"]
    for step in (1, 2):  # every agent is active and asked: every archetype has active members
        assert calls[(step, "survey_archetype")] == archetypes
        for kind in ("instruction", "tool_spec"):
            pooled = {row[6] for row in remote["emissions"] if row[0] == step and row[3] == kind}
            assert calls.get((step, kind), 0) == len(pooled) <= archetypes
        assert sum(n for (s, _), n in calls.items() if s == step) < N
    assert not rows_of(ray_db, "SELECT count(*) FROM emissions WHERE archetype IS NULL")[0][0]
