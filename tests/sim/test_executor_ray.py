"""--executor ray: synthesize gives the same rows and llm_calls accounting as the local executor,
offline and over HTTP, whatever the number of workers, and a failed Ray job resumed loses and
doubles nothing; personas dedup gives the same flags with its signatures computed on Ray.

Each module starts its own local Ray on 127.0.0.1 (two CPUs, no dashboard) and shuts it down."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from personahub.agents.llm import LLMClient, LLMSettings
from personahub.agents.server import running_server
from personahub.personas.dedup import DedupConfig, run_dedup
from personahub.personas.errors import PersonahubError
from personahub.personas.minhash import MinHashConfig
from personahub.sim import synthesize
from personahub.sim.synthesize import SynthOptions, run_synthesis

from tests._planted import planted_corpus
from tests.cli_helpers import invoke
from tests.optional import need_ray
from tests.personas.test_dedup import hub, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    need_ray()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def rows(db: Path, job_id: str) -> list[tuple]:
    """What a job made, without what differs by job (item id, time): in persona order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT persona_id, task, prompting, model, content, text, solution, "
                           "is_duplicate, duplicate_of IS NOT NULL FROM synth_items WHERE job_id = ? "
                           "ORDER BY persona_id", [job_id]).fetchall()
    finally:
        con.close()


def accounting(db: Path, job_id: str) -> list[tuple]:
    """The job's llm_calls by purpose, status, attempt and model, with their tokens."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT purpose, status, attempt, model_name, count(*), sum(tokens_in), "
                           "sum(tokens_out) FROM llm_calls WHERE job_id = ? GROUP BY ALL "
                           "ORDER BY ALL", [job_id]).fetchall()
    finally:
        con.close()


def synth(db: Path, **kwargs: Any) -> synthesize.SynthSummary:
    defaults: dict[str, Any] = {"task": "math_problem", "n": 23, "batch_size": 5, "solve": True,
                                "db": str(db)}
    return run_synthesis(SynthOptions(**{**defaults, **kwargs}))


@pytest.mark.parametrize("workers", [1, 2])
def test_offline_rows_and_calls_match_the_local_executor(local_ray: None, tmp_path: Path,
                                                         workers: int) -> None:
    local = synth(tmp_path / "local.duckdb")
    remote = synth(tmp_path / "ray.duckdb", executor="ray", ray_workers=workers)
    assert remote.written == local.written == 23 and remote.calls == local.calls
    assert remote.duplicates == local.duplicates and remote.solved == local.solved == 23
    assert rows(tmp_path / "ray.duckdb", remote.job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert accounting(tmp_path / "ray.duckdb", remote.job_id) \
        == accounting(tmp_path / "local.duckdb", local.job_id)


def test_persona_few_shot_over_the_loopback_server(local_ray: None, tmp_path: Path) -> None:
    """Over HTTP (ChatOpenAI on every worker) with the demonstrations' personas inferred on the
    driver: the same rows and accounting as a local job against the same server."""
    with running_server(seed=3) as server:
        llm = server.base_url + "?model=offline"
        kwargs: dict[str, Any] = {"task": "instruction", "prompting": "persona-few-shot", "llm": llm,
                                  "solve": False, "n": 12, "batch_size": 4}
        local = synth(tmp_path / "local.duckdb", **kwargs)
        remote = synth(tmp_path / "ray.duckdb", executor="ray", ray_workers=2, **kwargs)
    assert not remote.offline and remote.written == local.written == 12
    assert rows(tmp_path / "ray.duckdb", remote.job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert accounting(tmp_path / "ray.duckdb", remote.job_id) \
        == accounting(tmp_path / "local.duckdb", local.job_id)


def test_a_failed_ray_job_resumed_loses_and_doubles_nothing(local_ray: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthesize.SynthesisJob.write_batch
    seen = {"batches": 0}

    def dies_at_the_third(self: synthesize.SynthesisJob, results: Any, summary: Any) -> None:
        seen["batches"] += 1
        if seen["batches"] == 3:  # the driver dies with batches in flight on the workers
            raise RuntimeError("driver lost")
        real(self, results, summary)

    db = tmp_path / "ray.duckdb"
    monkeypatch.setattr(synthesize.SynthesisJob, "write_batch", dies_at_the_third)
    with pytest.raises(PersonahubError, match="--resume"):
        synth(db, executor="ray", ray_workers=2)
    monkeypatch.setattr(synthesize.SynthesisJob, "write_batch", real)
    job_id = duckdb.connect(str(db), read_only=True).execute(
        "SELECT job_id FROM synth_jobs").fetchall()[0][0]
    assert len(rows(db, job_id)) == 10  # two batches committed, the third rolled back
    resumed = run_synthesis(
        SynthOptions(task="math_problem", db=str(db), executor="ray", ray_workers=2), resume=job_id)
    assert resumed.skipped_done == 10 and resumed.written == 13
    local = synth(tmp_path / "local.duckdb")
    assert rows(db, job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert accounting(db, job_id) == accounting(tmp_path / "local.duckdb", local.job_id)


def _descendants(root: int) -> dict[int, str]:
    """Command lines of the processes under ``root`` (this test's Ray: started by this process)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    mine = {}
    for pid, command in commands.items():
        up = pid
        while up in parents and up != root:
            up = parents[up]
        if up == root and pid != root:
            mine[pid] = command
    return mine


def test_a_worker_killed_mid_job_loses_and_doubles_nothing(local_ray: None, tmp_path: Path) -> None:
    """SIGKILL one actor after the first batch is committed: Ray Data restarts it and asks its
    batches again (or the job fails and is resumed); either way the rows and the accounting are
    the local job's."""
    killed: list[int] = []

    def kill_one_worker(_: str, done: int, total: int | None) -> None:
        if killed:
            return
        workers = [pid for pid, command in _descendants(os.getpid()).items()
                   if "_SynthActor" in command]
        assert workers, "no Ray worker found"
        os.kill(workers[0], signal.SIGKILL)
        killed.append(workers[0])

    db = tmp_path / "ray.duckdb"
    options = SynthOptions(task="math_problem", n=23, batch_size=2, solve=True, db=str(db),
                           executor="ray", ray_workers=2)
    try:
        summary = run_synthesis(options, progress=kill_one_worker)
        job_id = summary.job_id
    except PersonahubError:
        job_id = duckdb.connect(str(db), read_only=True).execute(
            "SELECT job_id FROM synth_jobs").fetchall()[0][0]
        run_synthesis(options, resume=job_id)
    assert killed
    local = synth(tmp_path / "local.duckdb", batch_size=2)
    assert rows(db, job_id) == rows(tmp_path / "local.duckdb", local.job_id)
    assert accounting(db, job_id) == accounting(tmp_path / "local.duckdb", local.job_id)


def test_the_cli_runs_on_ray(local_ray: None, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    result = invoke("synthesize", "instruction", "--n", 6, "--db", db, "--batch-size", 2,
                    "--executor", "ray", "--ray-workers", 2)
    assert "6 instruction items written" in result.output


def test_a_spec_carrying_a_secret_is_refused(tmp_path: Path) -> None:
    need_ray()
    from personahub.sim.executor_ray import check_ray_client

    client = LLMClient(LLMSettings(spec="http://127.0.0.1:9/v1?model=m&api_key=sk-test"))
    with pytest.raises(PersonahubError, match="api_key_env"):
        check_ray_client(client)


def test_minhash_flags_match_the_local_stage(local_ray: None) -> None:
    from personahub.sim.executor_ray import minhash_signer

    texts = planted_corpus(300, 200, length=(40, 60), kinds=("swap", "edit1", "variant"), seed=5).texts
    config = DedupConfig(minhash=MinHashConfig(num_perm=64, threshold=0.8), batch_rows=97)
    local, remote = hub(texts), hub(texts)
    marked_here = run_dedup(local, config).marked
    marked_there = run_dedup(remote, config, sign=minhash_signer(workers=2)).marked
    assert marked_there == marked_here > 100
    assert snapshot(remote) == snapshot(local)


def test_personas_dedup_cli_on_ray_flags_what_local_flags(local_ray: None, tmp_path: Path) -> None:
    people = tmp_path / "people.jsonl"
    texts = planted_corpus(150, 100, length=(30, 40), kinds=("swap", "edit1"), seed=9).texts
    people.write_text("".join(f'{{"persona": "{t}"}}\n' for t in texts))
    flags = []
    for executor in ("local", "ray"):
        db = tmp_path / f"{executor}.duckdb"
        assert invoke("personas", "import", people, "--db", db).exit_code == 0
        result = invoke("personas", "dedup", "--db", db, "--executor", executor, "--ray-workers", 2)
        assert result.exit_code == 0, result.output
        con = duckdb.connect(str(db), read_only=True)
        flags.append(con.execute("SELECT persona_id, is_duplicate, duplicate_of, dup_stage "
                                 "FROM personas ORDER BY seq").fetchall())
        con.close()
    assert flags[0] == flags[1] and sum(1 for f in flags[0] if f[1]) > 50
