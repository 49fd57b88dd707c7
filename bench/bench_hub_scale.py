"""The hub path at scale: import, dedup stage 1, expansion bookkeeping, sampling and stats of a
templated hub of 1M, 10M or more personas, each stage a command in its own process.

For each size and stage it prints the seconds, the peak RSS of every process (the command's
own from the kernel's accounting, its worker processes' and Ray's polled every 0.1 s), the disk
the database and the stage's work folder took, and for dedup the recall and precision against
the planted near-duplicates (``bench/hub_corpus.py``): recall over planted pairs at exact
Jaccard >= 0.9 (found when at most one of the two is kept: ``score``), precision as the share of
marks at exact Jaccard >= 0.9 over a sample of marks. ``--compare`` times stage 1 on the same
texts in memory beside rensa and datasketch (each in a child process), for the speed target.

Run:  python bench/bench_hub_scale.py --sizes 1000000,10000000 [--memory-mb 1024]
      [--workdir DIR] [--stages import,dedup,expand,sample,stats] [--compare 1000000]
      [--compare-timeout SECONDS]   (a compared method stopped past it: a lower bound)
      [--ray-nodes 3]   (dedup again on a local Ray cluster of that many nodes, flags compared)
      [--kill-in sign,buckets,verify]   (dedup again, kill -9 in each phase, resumed, compared)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import hub_corpus  # noqa: E402

THRESHOLD = 0.9
PRECISION_SAMPLE = 20_000


@dataclass
class Measured:
    """One command's seconds, peak RSS per process and output."""

    seconds: float
    peaks: dict[str, float] = field(default_factory=dict)  # role -> MiB
    disk_mib: float = 0.0
    output: str = ""
    code: int = 0
    # a Ray worker's title at its peak (ray::Task) -> (RSS, RSS less shared pages) in MiB
    ray_tasks: dict[str, tuple[float, float]] = field(default_factory=dict)
    # the command's own process at its polled peak: (RSS, private, shared) in MiB, from
    # /proc/PID/status (RssAnon, RssShmem: the object store's pages it mapped are shared)
    own: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu_seconds: float = 0.0  # the command's user + system time (and its waited-for children's)

    def own_line(self) -> str:
        """The command's own polled peak, split into private and shared pages, and its CPU."""
        rss, anon, shared = self.own
        return (f"command's own peak {rss:,.0f} MiB (private {anon:,.0f}, shared {shared:,.0f}); "
                f"CPU {self.cpu_seconds:,.1f} s")

    def task_line(self) -> str:
        """The Ray workers' peaks by the task each ran at its peak, largest first: RSS and,
        in brackets, RSS less its shared pages (the object store's mapped objects among them)."""
        return ", ".join(f"{title} {rss:,.0f} ({own:,.0f})" for title, (rss, own) in
                         sorted(self.ray_tasks.items(), key=lambda kv: -kv[1][0]))

    def line(self) -> str:
        peaks = ", ".join(f"{role} {mib:,.0f}" for role, mib in sorted(self.peaks.items()))
        return (f"{self.seconds:8.1f} s ({self.cpu_seconds:,.1f} CPU s)  peak RSS MiB: {peaks}  "
                f"disk {self.disk_mib:,.0f} MiB")


def _folder_mib(path: Path) -> float:
    total = 0
    if path.is_file():
        return path.stat().st_size / 2**20
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total / 2**20


def _status_mib(pid: int) -> tuple[float, float, float]:
    """(RSS, private, shared) of a process in MiB, from /proc/PID/status; zeros once it is gone."""
    fields: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "RssAnon", "RssShmem"):
                    fields[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0), fields.get("RssShmem", 0.0)


def _ray_processes(root: int) -> list:
    """Ray's processes under root (the bench's cluster), not another Ray on this machine."""
    import psutil

    found = []
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return found
    for proc in children:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "default_worker" in cmd:
            found.append(proc)
    return found


def run(args: list[str], *, python: str = sys.executable, watch: list[Path] = (),
        ray: int | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``personahub ARGS`` and measure it, its children and (ray: the cluster's process id)
    Ray's processes under that cluster."""
    import tempfile

    import psutil

    cmd = [python, "-c", "from personahub.cli.app import app; app()", *map(str, args)]
    # a file, not a pipe: a command that prints more than a pipe holds would wait for a reader
    # that only reads once it has exited
    sink = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    peaks: dict[int, tuple[str, float, str, float]] = {}
    disk = [0.0]
    own_peak = [(0.0, 0.0, 0.0)]
    done = threading.Event()

    def poll() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            mine = _status_mib(proc.pid)
            if mine[0] > own_peak[0][0]:
                own_peak[0] = mine
            try:
                procs = [(p, "worker") for p in root.children(recursive=True)]
            except psutil.Error:
                procs = []
            if ray is not None:
                procs += [(p, "ray") for p in _ray_processes(ray)]
            for p, role in procs:
                try:  # a process may end (or be a zombie) between the listing and here
                    info = p.memory_info()
                    rss = info.rss / 2**20
                    cmd = " ".join(p.cmdline()) if role == "ray" else ""
                except psutil.Error:
                    continue
                name = role
                if role == "ray":  # a worker's title is ray::Task; the raylet's arguments name
                    # default_worker.py too
                    head = cmd.split()[:2]
                    name = ("ray worker" if cmd.startswith("ray::")
                            or any(w.endswith("default_worker.py") for w in head)
                            else "ray raylet/gcs")
                old = peaks.get(p.pid, (name, 0.0, "", 0.0))
                if rss > old[1]:  # the task a Ray worker ran at its peak: its title, ray::Task
                    title = cmd.split()[0] if name == "ray worker" and cmd else ""
                    peaks[p.pid] = (name, rss, title, rss - getattr(info, "shared", 0) / 2**20)
            disk[0] = max(disk[0], sum(_folder_mib(w) for w in watch if w.exists()))
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    done.set()
    poller.join()
    sink.seek(0)
    output = sink.read()
    sink.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    by_role: dict[str, float] = {"command": usage.ru_maxrss / 1024}
    tasks: dict[str, tuple[float, float]] = {}
    for name, mib, title, own in peaks.values():
        if name != "command":
            by_role[name] = max(by_role.get(name, 0.0), mib)
        if title and mib > tasks.get(title, (0.0, 0.0))[0]:
            tasks[title] = (mib, own)
    disk[0] = max(disk[0], sum(_folder_mib(w) for w in watch if w.exists()))
    return Measured(seconds, by_role, disk[0], output, proc.returncode, tasks, own_peak[0],
                    usage.ru_utime + usage.ru_stime)


def corpus(workdir: Path, n: int) -> tuple[Path, Path]:
    """The hub file of n lines and its truth (copies' lines, sources, exact Jaccard)."""
    path, truth = workdir / f"hub-{n}.jsonl", workdir / f"hub-{n}.truth.npz"
    if not (path.exists() and truth.exists()):
        t0 = time.perf_counter()
        lines, sources, jac = hub_corpus.write(path, n)
        np.savez(truth, lines=lines, sources=sources, jaccard=jac)
        print(f"  wrote {path.name} in {time.perf_counter() - t0:.0f} s (not timed)", flush=True)
    return path, truth


def flags(db: Path, marked: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each marked line and the line it duplicates (marked=False: every line in the hub, -1 for
    the kept), from source_ref 'line N'."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        table = con.execute(f"""
            SELECT CAST(split_part(p.source_ref, ' ', 2) AS BIGINT) - 1 AS line,
                   coalesce(CAST(split_part(d.source_ref, ' ', 2) AS BIGINT) - 1, -1) AS dup
            FROM personas p LEFT JOIN personas d ON d.persona_id = p.duplicate_of
            WHERE p.source_ref LIKE 'line %' {'AND p.is_duplicate' if marked else ''}
            ORDER BY line""").fetchnumpy()
    finally:
        con.close()
    return table["line"].astype(np.int64), table["dup"].astype(np.int64)


def score(db: Path, truth_path: Path, n: int) -> dict[str, float]:
    """Recall on planted pairs at J >= 0.9; precision on a sample of marks.

    A planted pair is found when dedup kept at most one of its two texts, which is what stage 1
    promises (no two kept texts at J >= 0.9): the copy marked onto its original, the original
    marked onto the copy (the import's order, ``seq``, is first seen, not the file's line order),
    or the original marked onto a third text it duplicates while the copy, below 0.9 to that
    text, stays kept (marks do not chain). It is missed when both stay kept. ``copy_marked`` is
    the stricter share of copies marked, the only hit the bench counted before. A copy whose
    text repeats an earlier line's exactly was collapsed by the import (the same persona) and is
    not counted.
    """
    truth = np.load(truth_path)
    marked_lines, marked_dups = flags(db)
    in_hub = np.zeros(n, dtype=bool)
    in_hub[flags(db, marked=False)[0]] = True
    dup = np.full(n, -1, dtype=np.int64)
    dup[marked_lines] = marked_dups
    lines, sources = truth["lines"], truth["sources"]
    above = (truth["jaccard"] >= THRESHOLD) & in_hub[lines] & in_hub[sources]
    copy, source = lines[above], sources[above]
    copy_marked = dup[copy] >= 0
    source_marked = dup[source] >= 0
    reversed_ = ~copy_marked & (dup[source] == copy)
    chained = ~copy_marked & source_marked & ~reversed_
    # a chained copy left beside its original's survivor at J >= 0.9 is a pair both kept
    kept_by_chain = [hub_corpus.jaccard(x, y) >= THRESHOLD for x, y in zip(
        hub_corpus.text_of(copy[chained], 0), hub_corpus.text_of(dup[source[chained]], 0),
        strict=True)]
    found = copy_marked | source_marked
    below = (truth["jaccard"] < THRESHOLD) & in_hub[lines]
    wrong_below = int((dup[lines[below]] == sources[below]).sum())
    rng = np.random.default_rng(0)
    sample = (rng.choice(marked_lines.size, min(PRECISION_SAMPLE, marked_lines.size),
                         replace=False) if marked_lines.size else np.empty(0, dtype=np.int64))
    a = hub_corpus.text_of(marked_lines[sample], 0)
    b = hub_corpus.text_of(marked_dups[sample], 0)
    good = [hub_corpus.jaccard(x, y) >= THRESHOLD for x, y in zip(a, b, strict=True)]
    missed_jaccard = np.round(truth["jaccard"][above][~found], 3)
    return {"recall": float(found.mean()) if found.size else 1.0,
            "copy_marked": float(copy_marked.mean()) if found.size else 1.0,
            "planted_above": int(above.sum()), "missed": int((~found).sum()),
            "missed_at_threshold": int((missed_jaccard <= THRESHOLD).sum()),
            "reversed": int(reversed_.sum()), "chained": int(chained.sum()),
            "chained_beside_survivor": int(sum(kept_by_chain)),
            "precision": float(np.mean(good)) if good else 1.0, "marked": int(marked_lines.size),
            "planted_below_marked_to_source": wrong_below}


RELATION_CHUNK = 1_000_000
# DuckDB's memory while the relations go in (not measured): on a hub made before the relations
# key was dropped, its index is held in memory whatever the limit (about 20M keys at 10M
# personas), so the limit leaves room for it
RELATIONS_MEMORY = "4GiB"


def has_relations(db: Path) -> bool:
    """Whether the hub holds any relation (a hub imported by another run may have none)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return bool(con.execute("SELECT 1 FROM relations LIMIT 1").fetchall())
    finally:
        con.close()


def add_relations(db: Path, n: int, chunk: int = RELATION_CHUNK) -> None:
    """Give the hub a graph to count: each persona to the next and to one far away (not timed).

    Inserted a chunk of personas at a time, each chunk its own transaction, so that the join's
    hash table and the transaction's rows are a chunk's, not the hub's. A persona's two links
    are one when its far persona is its next: DISTINCT keeps it once (a hub made now has no key
    on relations to leave it out; a chunk's sources are its own personas, so chunks never repeat
    each other's rows).
    """
    import duckdb

    con = duckdb.connect(str(db))
    try:
        con.execute(f"SET memory_limit = '{RELATIONS_MEMORY}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE TEMP TABLE _bench_p AS SELECT persona_id, "
                    "row_number() OVER (ORDER BY seq) - 1 AS i FROM personas")
        count = con.execute("SELECT count(*) FROM _bench_p").fetchall()[0][0]
        for lo in range(0, count, chunk):
            con.execute("""
                INSERT INTO relations (src, dst, relation, hop, source)
                SELECT DISTINCT a.persona_id, b.persona_id, CASE WHEN a.i % 3 = 0 THEN 'colleague'
                       ELSE 'neighbour' END, 1, 'bench'
                FROM (SELECT persona_id, i, (i + 1) % $n AS j FROM _bench_p WHERE i >= $lo AND i < $hi
                      UNION ALL SELECT persona_id, i, (i * 7919 + 13) % $n FROM _bench_p
                      WHERE i >= $lo AND i < $hi) AS a
                JOIN _bench_p AS b ON b.i = a.j
                WHERE a.persona_id <> b.persona_id""",
                        {"n": n, "lo": lo, "hi": lo + chunk})  # two equi-joins: an OR join is n x n
    finally:
        con.close()


def add_relations_apart(db: Path, n: int) -> None:
    """Run add_relations in a process of its own.

    In this process its DuckDB grew to gigabytes at 10M, and a command started from a process
    that large reported that size as its own peak (the kernel's maximum RSS of a child counts
    the pages it shared with its parent before exec).
    """
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=add_relations, args=(db, n))
    child.start()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"add_relations({db}) exited with {child.exitcode}")


def stage_lines(name: str, m: Measured) -> None:
    print(f"  {name:22s} {m.line()}", flush=True)
    if m.code != 0:
        print("    FAILED: " + "\n    ".join(m.output.strip().splitlines()[-5:]), flush=True)


def one_size(n: int, args: argparse.Namespace) -> dict[str, object]:
    workdir: Path = args.workdir
    print(f"\nhub of {n:,} personas (memory setting {args.memory_mb} MiB)", flush=True)
    source, truth = corpus(workdir, n)
    db = workdir / f"hub-{n}.duckdb"
    stages = args.stages.split(",")
    result: dict[str, object] = {"n": n}
    watch = [db, Path(f"{db}.wal"), Path(f"{db}.jobs"), Path(f"{db}.tmp")]
    if "import" in stages:
        for leftover in watch:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
        m = run(["personas", "import", source, "--db", db], watch=watch)
        stage_lines("import", m)
        result["import"] = m
        add_relations_apart(db, n)
    if "dedup" in stages:
        backup = workdir / f"hub-{n}.before-dedup.duckdb"
        if "import" not in stages and backup.exists():  # kept by an earlier run (--keep)
            shutil.copy(backup, db)
        else:
            shutil.copy(db, backup)
        m = run(["personas", "dedup", "--db", db, "--embedder", "none", "--memory-mb",
                 args.memory_mb], watch=watch)
        stage_lines("dedup stage 1", m)
        for line in m.output.splitlines():
            if line.strip().startswith("minhash"):
                print(f"    {line.strip()}", flush=True)
        print(f"    the command: {m.own_line()}", flush=True)
        result["dedup"] = m
        quality = score(db, truth, n)
        result["quality"] = quality
        print(f"    recall {quality['recall']:.4f} over {quality['planted_above']:,} planted pairs "
              f"at J >= 0.9 (missed, both kept: {quality['missed']:,}, "
              f"{quality['missed_at_threshold']:,} of them at J = 0.9); copies marked "
              f"{quality['copy_marked']:.4f} (originals marked onto their copy "
              f"{quality['reversed']:,}, onto a third text {quality['chained']:,}, the copy "
              f"beside that text at J >= 0.9 {quality['chained_beside_survivor']:,}); precision "
              f"{quality['precision']:.4f} (sample of marks); marked {quality['marked']:,}; "
              f"planted below 0.9 marked onto their source: "
              f"{quality['planted_below_marked_to_source']:,}", flush=True)
        if args.ray_nodes:
            result["ray"] = ray_dedup(n, backup, db, args)
        if args.kill_in:
            result["killed_same_flags"] = killed_dedup(n, backup, db, args)
        if not args.keep:
            backup.unlink(missing_ok=True)
    if "expand" in stages:
        m = run(["personas", "expand", "--db", db, "--limit", 200, "--hops", 1, "--fanout", 2],
                watch=watch)
        stage_lines("expand (200 parents)", m)
        result["expand"] = m
    if "sample" in stages:
        m = run(["personas", "sample", "--db", db, "-k", 1000, "--seed", 1, "--format", "ids"],
                watch=watch)
        stage_lines("sample -k 1000", m)
        result["sample"] = m
        m = run(["personas", "sample", "--db", db, "-k", 1000, "--seed", 1, "--format", "ids",
                 "--where", "hop>=0", "--stratify", "source"], watch=watch)
        stage_lines("sample --stratify", m)
        result["sample_stratified"] = m
    if "stats" in stages:
        if "import" not in stages and not has_relations(db):
            t0 = time.perf_counter()
            add_relations_apart(db, n)  # a hub imported without the bench's graph
            print(f"  added the bench's relations in {time.perf_counter() - t0:.0f} s (not timed)",
                  flush=True)
        m = run(["personas", "stats", "--db", db, "--json"], watch=watch)
        stage_lines("stats", m)
        result["stats"] = m
    print(f"  database {_folder_mib(db):,.0f} MiB", flush=True)
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ray_dedup(n: int, backup: Path, local_db: Path, args: argparse.Namespace) -> Measured:
    """Stage 1 on a local Ray cluster of several nodes (one raylet each), flags compared."""
    db = args.workdir / f"hub-{n}.ray.duckdb"
    shutil.copy(backup, db)
    script = (
        "import sys, time, json\n"
        "from ray.cluster_utils import Cluster\n"
        # an explicit free port: another local cluster on this machine may hold Ray's default
        "c = Cluster(initialize_head=True, head_node_args={'num_cpus': 1, "
        f"'gcs_server_port': {_free_port()}}})\n"
        f"[c.add_node(num_cpus=1) for _ in range({args.ray_nodes - 1})]\n"
        "c.wait_for_nodes()\n"
        "print(c.address, flush=True)\n"
        "sys.stdin.read()\n"
        "c.shutdown()\n")
    cluster = subprocess.Popen([args.ray_python, "-c", script], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cluster.stdout is not None and cluster.stdin is not None
    address = cluster.stdout.readline().strip()
    if not address:  # the cluster did not start: its traceback is above
        cluster.wait(timeout=60)
        raise RuntimeError(f"the local Ray cluster of {args.ray_nodes} nodes did not start")
    try:
        m = run(["personas", "dedup", "--db", db, "--embedder", "none", "--memory-mb",
                 args.memory_mb, "--executor", "ray", "--ray-address", address],
                python=args.ray_python, watch=[db, Path(f"{db}.jobs")], ray=cluster.pid)
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=120)
    stage_lines(f"dedup on Ray, {args.ray_nodes} nodes", m)
    print(f"    the driver: {m.own_line()}", flush=True)
    if m.ray_tasks:
        print(f"    Ray workers' peaks by the task at the peak, MiB: {m.task_line()}", flush=True)
    if m.code == 0:
        same = np.array_equal(np.stack(flags(db)), np.stack(flags(local_db)))
        print(f"    flags identical to the local run: {same}", flush=True)
    else:
        print("    flags not compared: the command failed", flush=True)
    db.unlink(missing_ok=True)
    return m


KILL_PHASES = {"sign": "sign/*.done", "buckets": "buckets/*.done", "verify": "verify/*.npy"}


def killed_dedup(n: int, backup: Path, local_db: Path, args: argparse.Namespace) -> bool:
    """Stage 1 again, killed (-9) a third of the way through each named phase and resumed each
    time by the same command; return whether its flags are the uninterrupted run's."""
    import glob
    import math
    import signal

    db = args.workdir / f"hub-{n}.killed.duckdb"
    shutil.copy(backup, db)
    cmd = [sys.executable, "-c", "from personahub.cli.app import app; app()", "personas", "dedup",
           "--db", str(db), "--embedder", "none", "--memory-mb", str(args.memory_mb)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    for phase in [*args.kill_in.split(","), None]:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            plans = glob.glob(f"{db}.jobs/*/minhash/plan.json")
            if phase and plans:
                plan = json.loads(Path(plans[0]).read_text(encoding="utf-8"))["plan"]
                whole = (plan["partitions"] if phase == "buckets" else
                         math.ceil(plan["texts"] / plan["chunk_rows"]))
                done = glob.glob(f"{db}.jobs/*/minhash/{KILL_PHASES[phase]}")
                if len(done) >= max(1, whole // 3):
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    print(f"    kill -9 in {phase} at {time.perf_counter() - t0:.0f} s "
                          f"({len(done)} of {whole} files)", flush=True)
                    break
            time.sleep(0.5)
        else:
            if proc.returncode:
                print(f"    the resumed dedup exited {proc.returncode}", flush=True)
                return False
    same = np.array_equal(np.stack(flags(db)), np.stack(flags(local_db)))
    print(f"    killed and resumed in {time.perf_counter() - t0:.0f} s; flags identical to the "
          f"uninterrupted run: {same}", flush=True)
    for leftover in (db, Path(f"{db}.wal"), Path(f"{db}.jobs"), Path(f"{db}.tmp")):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)
    return same


def compare(n: int, args: argparse.Namespace) -> None:
    """Stage 1 on n texts in memory: ours, rensa and datasketch, each in a child process."""
    import pickle
    import tempfile

    texts = [t for _, block in hub_corpus.blocks(n, 0) for t in block]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "texts.pkl"
        path.write_bytes(pickle.dumps(texts, protocol=pickle.HIGHEST_PROTOCOL))
        del texts
        print(f"\nstage 1 on {n:,} texts in memory, beside rensa and datasketch", flush=True)
        times = {}
        for method in args.compare_methods.split(","):
            out = Path(tmp) / f"{method}.npy"
            try:
                proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_minhash.py"),
                                       "--child", method, "--texts", str(path), "--out", str(out)],
                                      capture_output=True, text=True, check=False,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)},
                                      timeout=args.compare_timeout or None)
            except subprocess.TimeoutExpired:  # the child is killed; its time is a lower bound
                beyond = (f" (over {args.compare_timeout / times['ours']:.0f}x ours)"
                          if "ours" in times else "")
                print(f"  {method:16s} stopped after {args.compare_timeout:,.0f} s{beyond}",
                      flush=True)
                continue
            if proc.returncode != 0:
                print(f"  {method:16s} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            times[method] = measured["time_s"]
            print(f"  {method:16s} {measured['time_s']:8.2f} s  peak +{measured['peak_mib']:,.0f}"
                  f" MiB  marked {int((np.load(out) >= 0).sum()):,}", flush=True)
        if "ours" in times:
            for other, seconds in times.items():
                if other != "ours":
                    print(f"  {other} / ours: {seconds / times['ours']:.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".hub_scale")
    ap.add_argument("--stages", default="import,dedup,expand,sample,stats")
    ap.add_argument("--compare", type=int, default=0, help="texts for the in-memory comparison")
    ap.add_argument("--compare-methods", default="ours,rensa,datasketch-bulk")
    ap.add_argument("--compare-timeout", type=float, default=0,
                    help="seconds after which a compared method is stopped (0: none)")
    ap.add_argument("--ray-nodes", type=int, default=0)
    ap.add_argument("--ray-python", default=sys.executable,
                    help="a Python with personahub[ray] (the Ray runs use it)")
    ap.add_argument("--kill-in", default="",
                    help="dedup again, killed -9 in these phases (sign,buckets,verify) and "
                         "resumed, flags compared with the uninterrupted run")
    ap.add_argument("--keep", action="store_true",
                    help="keep the hub files for another run, the store before dedup too (a "
                         "run of --stages dedup then starts from it)")
    ap.add_argument("--score", type=Path, default=None,
                    help="only score this deduplicated hub database against its size's truth")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs",
          flush=True)
    if args.score:
        if not args.score.is_file():
            ap.error(f"--score: no database at {args.score}")
        n = int(args.sizes.split(",")[0])
        print(json.dumps(score(args.score, corpus(args.workdir, n)[1], n)), flush=True)
        return
    if args.compare:
        compare(args.compare, args)
    for n in (int(s) for s in args.sizes.split(",") if s):
        one_size(n, args)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"this process's peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} "
          "MiB (scoring)", flush=True)


if __name__ == "__main__":
    main()
