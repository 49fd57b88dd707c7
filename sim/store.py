"""The run log's SQL: the tables a scenario run writes, and what reads them back.

A step's rows and model calls commit in one transaction, so a resume continues from the last
complete step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from personahub.core.call_log import call_counts
from personahub.core.store import insert_columns, memory_limit, one_thread, scalar
from personahub.personas.store import PERSONA_TEXTS

if TYPE_CHECKING:
    from personahub.sim.column_society import ColumnStep
    from personahub.sim.society import StepResult

Rows = dict[str, list[dict[str, object]]]
_RESTORE_CHUNK = 100_000  # emissions read at a time when rebuilding the near-duplicate indexes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)



def run_row(run_id: str, *, scenario: str, scenario_path: str, llm: str,
            steps_planned: int) -> dict[str, object]:
    """Write the run's runs row."""
    return {"run_id": run_id, "scenario": scenario, "scenario_path": scenario_path, "llm": llm,
            "steps_planned": steps_planned, "steps_done": 0}


def add_agents(con: duckdb.DuckDBPyConnection, run_id: str, persona_ids: Sequence[str] | pa.Array,
               agent_ids: Sequence[int] | np.ndarray,
               edges: tuple[Any, Any, Any] = ((), (), ())) -> None:
    """Record which persona each agent plays and the starting graph."""
    src, dst, relation = edges
    run = pa.scalar(run_id, pa.string())
    insert_columns(con, "run_agents", {
        "run_id": pa.repeat(run, len(agent_ids)),
        "agent_id": pa.array(np.asarray(agent_ids, dtype=np.int32)),
        "persona_id": pa.array(persona_ids, type=pa.string())})
    insert_columns(con, "run_edges", {
        "run_id": pa.repeat(run, len(src)), "src": src, "dst": dst, "relation": relation})


def add_archetypes(con: duckdb.DuckDBPyConnection, run_id: str,
                   persona_ids: Sequence[str] | pa.Array, labels: Sequence[int] | np.ndarray,
                   representatives: Sequence[str], sizes: Sequence[int],
                   attribute_shares: Sequence[Mapping[str, object]], method: str) -> None:
    """Record a run's archetypes and each agent's, in agent order."""
    insert_columns(con, "run_archetypes", {
        "run_id": [run_id] * len(sizes), "archetype": list(range(len(sizes))),
        "size": [int(n) for n in sizes], "representative": list(representatives),
        "attribute_shares": [json.dumps(s, sort_keys=True) for s in attribute_shares],
        "method": [method] * len(sizes)})
    insert_columns(con, "run_agent_archetypes", {
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), len(persona_ids)),
        "persona_id": pa.array(persona_ids, type=pa.string()),
        "archetype": pa.array(np.asarray(labels, dtype=np.int32))})


def archetypes_of(con: duckdb.DuckDBPyConnection,
                  run_id: str) -> tuple[dict[str, int], list[str]] | None:
    """Each persona's archetype and each archetype's representative; None without archetypes."""
    reps = [str(r[0]) for r in con.execute(
        "SELECT representative FROM run_archetypes WHERE run_id = ? ORDER BY archetype",
        [run_id]).fetchall()]
    if not reps:
        return None
    labels = {str(p): int(a) for p, a in con.execute(
        "SELECT persona_id, archetype FROM run_agent_archetypes WHERE run_id = ?",
        [run_id]).fetchall()}
    return labels, reps


def archetype_representatives(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """Each archetype's representative persona id, in archetype order ([] without archetypes)."""
    return [str(r[0]) for r in con.execute(
        "SELECT representative FROM run_archetypes WHERE run_id = ? ORDER BY archetype",
        [run_id]).fetchall()]


ARCHETYPE_LINES = 5  # archetypes show names, largest first


def archetype_lines(con: duckdb.DuckDBPyConnection, run_id: str,
                    top: int = ARCHETYPE_LINES) -> list[str]:
    """Return a run's grouping as console lines, the largest archetypes first."""
    rows = con.execute("SELECT archetype, size, representative, method FROM run_archetypes "
                       "WHERE run_id = ? ORDER BY size DESC, archetype", [run_id]).fetchall()
    if not rows:
        return []
    total = sum(int(r[1]) for r in rows)
    lines = [f"archetypes: {len(rows)} over {total} agents ({rows[0][3]})"]
    lines += [f"  archetype {a}: {n} agents ({int(n) / total:.0%}), representative {rep}"
              for a, n, rep, _ in rows[:top]]
    if len(rows) > top:
        lines.append(f"  ... {len(rows) - top} more")
    return lines


def archetype_table(con: duckdb.DuckDBPyConnection, run_id: str
                    ) -> tuple[str, list[tuple[int, int, str, str]]]:
    """Per archetype, largest first: size, representative and members' attribute shares."""
    rows = con.execute("SELECT archetype, size, representative, attribute_shares, method "
                       "FROM run_archetypes WHERE run_id = ? ORDER BY size DESC, archetype",
                       [run_id]).fetchall()
    table = []
    for archetype, size, representative, shares, _ in rows:
        by_attribute = json.loads(shares) if shares else {}
        text = "; ".join(f"{name}: " + ", ".join(f"{v} {share:.0%}" for v, share in
                                                  sorted(values.items(), key=lambda x: -x[1])[:3])
                         for name, values in by_attribute.items())
        table.append((int(archetype), int(size), str(representative), text))
    return (str(rows[0][4] or "") if rows else ""), table


def step_rows(run_id: str, result: StepResult, duplicates: Mapping[str, str | None],
              started_at: dt.datetime, *, model: str) -> Rows:
    """Return a step's rows by table, in insertion order, its steps row last."""
    emissions = [{
        "emission_id": e.emission_id, "run_id": run_id, "step": e.step,
        "agent_id": e.agent_id, "persona_id": e.persona_id, "task": e.task,
        "content": e.content, "text": e.text, "target_persona_id": e.target_persona_id,
        "model": model, "is_duplicate": duplicates.get(e.emission_id) is not None,
        "duplicate_of": duplicates.get(e.emission_id), "archetype": e.archetype,
    } for e in result.emissions]
    step_row = {
        "run_id": run_id, "step": result.step, "n_active": result.n_active,
        "n_emissions": len(result.emissions), "n_messages": len(result.messages),
        "n_failed": len(result.failures), "n_answers": len(result.answers),
        "n_archetype_calls": result.archetype_calls, "n_drawn": result.drawn,
        "started_at": started_at, "finished_at": _now(),
    }
    tagged = {"run_id": run_id}
    return {
        "emissions": emissions,
        "messages": [{**vars(m), **tagged} for m in result.messages],
        "events": [{**e, **tagged} for e in result.events],
        "interventions": [{**x, **tagged} for x in result.interventions],
        "survey_answers": [{**a, **tagged} for a in result.answers],
        "rejected": list(result.rejected),
        "decisions": [{**d, **tagged} for d in result.decisions],
        "agent_states": [{"run_id": run_id, "agent_id": a, "step": result.step, "state": state}
                         for a, state in result.states],
        "steps": [step_row],
    }


def column_step_rows(run_id: str, result: ColumnStep, started_at: dt.datetime) -> Rows:
    """Return a column step's small rows by table, its steps row last (its shards' rows are files)."""
    tagged = {"run_id": run_id}
    return {
        "events": [{**e, **tagged} for e in result.events],
        "interventions": [{**x, **tagged} for x in result.interventions],
        "rejected": list(result.rejected),
        "steps": [{
            "run_id": run_id, "step": result.step, "n_active": result.n_active,
            "n_emissions": result.emissions, "n_messages": result.messages,
            "n_failed": sum(result.failures.values()), "n_answers": result.answers,
            "n_archetype_calls": result.archetype_calls, "n_drawn": result.drawn,
            "started_at": started_at, "finished_at": _now()}],
    }


def set_steps_done(con: duckdb.DuckDBPyConnection, run_id: str, step: int) -> None:
    """Record the run's last committed step (in the step's transaction)."""
    con.execute("UPDATE runs SET steps_done = ? WHERE run_id = ?", [step, run_id])


_sharing = [0]  # runs in this process that share one DuckDB instance
_sharing_lock = threading.Lock()


@contextlib.contextmanager
def shared_pool() -> Iterator[None]:
    """Mark several runs of this process as sharing one database instance, so release_cached_blocks
    does not lower the pool's limit under the others' allocations (DuckDB fails them).
    """
    with _sharing_lock:
        _sharing[0] += 1
    try:
        yield
    finally:
        with _sharing_lock:
            _sharing[0] -= 1


def _others(con: duckdb.DuckDBPyConnection) -> int:
    """Return the bytes DuckDB holds beyond the cached blocks of its tables (it cannot evict them)."""
    return int(scalar(con, "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                           "WHERE tag <> 'BASE_TABLE'"))


#: DuckDB's buffer pool beyond what it holds already while a column society's setup writes
BULK_ROOM: Final = 256 << 20
#: and, past that, per agent
ROOM_AN_AGENT: Final = 192
#: DuckDB's buffer pool beyond what it holds already while a column society exports its agents
#: or commits a step: the same at any population, since the export's join and sort spill past it
#: and the commit's rows go to the database file as they come (bench_society_scale.py)
RUN_ROOM: Final = 96 << 20


#: and, while a setup inserts its acquaintance links, per link: on a hub made before the
#: relations key was dropped, its index (an ART, which DuckDB cannot spill) grows about 110 bytes
#: a link until the insert commits. A hub made now has no key (its links are anti-joined against
#: the table); the room is kept the same there, since what it can shrink to is not measured
ROOM_A_LINK: Final = 192

#: agents an export's Parquet piece holds (a shard reads the pieces across its range)
EXPORT_RANGE: Final = 131_072
#: rows an export reads back from DuckDB at a time
EXPORT_BATCH: Final = 16_384


def setup_room(agents: int) -> int:
    """Return the room DuckDB gets while a column society's setup of ``agents`` writes them."""
    return max(BULK_ROOM, ROOM_AN_AGENT * agents)


@contextlib.contextmanager
def bounded_pool(con: duckdb.DuckDBPyConnection, room: int = RUN_ROOM) -> Iterator[None]:
    """Hold DuckDB's buffer pool to what it holds now plus ``room`` while bulk work runs, then
    give back what it cached.

    Under its default limit (80% of RAM) DuckDB keeps the blocks of a million-row export or insert
    and its allocator keeps what their sorts and joins freed, so a process's peak grows with the
    population; under a limit it spills to its temporary directory instead. The limit the database
    had (its caller's own, or DuckDB's default) is given back after. Nothing changes when several
    runs share the database instance (``shared_pool``).
    """
    if _sharing[0]:
        yield
        return
    with contextlib.ExitStack() as held:
        with contextlib.suppress(duckdb.Error):  # a locked configuration: the pool as it is
            held.enter_context(memory_limit(con, f"{_others(con) + room}B"))
        yield


def release_freed(con: duckdb.DuckDBPyConnection) -> None:
    """Give back to the system what DuckDB's finished queries freed.

    DuckDB's allocator keeps the memory a query's sorts, joins and results freed (at a million
    agents, hundreds of MB) until its memory limit is set, which flushes it; this sets the limit
    to what it is (rounded up: DuckDB shows it to a tenth of its unit). Nothing changes when
    several runs share the database instance (``shared_pool``) or the limit cannot be read back.
    """
    if _sharing[0]:
        return
    with contextlib.suppress(duckdb.Error, ValueError):
        number, unit = str(scalar(con, "SELECT current_setting('memory_limit')")).split()
        scale = 1024 ** ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"].index(unit)
        con.execute(f"SET memory_limit = '{math.ceil((float(number) + 0.05) * scale)}B'")


def release_cached_blocks(con: duckdb.DuckDBPyConnection, *, slack: int = 8 << 20,
                          room: int = 64 << 20) -> None:
    """Checkpoint the step under a lowered buffer-pool limit, so a long run's memory stays flat.

    DuckDB keeps every block up to 80% of RAM and its own checkpoints grew in memory
    (bench_memory_long.py). The limit the database had is given back after. Nothing changes when
    the pool cannot shrink or a transaction is open.
    """
    if _sharing[0]:
        return
    with contextlib.suppress(duckdb.Error), memory_limit(con, f"{_others(con) + room}B"):
        with contextlib.suppress(duckdb.Error):
            con.execute("CHECKPOINT")
        con.execute(f"SET memory_limit = '{_others(con) + slack}B'")


#: who put an event or intervention row into the run (NULL: the scenario)
SOURCE: Final = "coalesce(source, 'scenario')"



class RunRecord(NamedTuple):
    """A run's runs row: scenario name and file, and steps planned."""

    scenario: str
    scenario_path: str
    steps_planned: int


def run_record(con: duckdb.DuckDBPyConnection, run_id: str) -> RunRecord | None:
    """Return the run's runs row, or None when there is no such run."""
    rows = con.execute("SELECT scenario, scenario_path, steps_planned FROM runs WHERE run_id = ?",
                       [run_id]).fetchall()
    if not rows:
        return None
    scenario, path, steps = rows[0]
    return RunRecord(str(scenario or ""), str(path or ""), int(steps or 0))


def steps_done(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Return the run's last committed step (0 before the first)."""
    rows = con.execute("SELECT steps_done FROM runs WHERE run_id = ?", [run_id]).fetchall()
    return int(rows[0][0] or 0) if rows else 0


def agent_persona_ids(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """Return the persona each agent plays, in agent-id order."""
    return [r[0] for r in con.execute("SELECT persona_id FROM run_agents WHERE run_id = ? "
                                      "ORDER BY agent_id", [run_id]).fetchall()]


def starting_edges(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, np.ndarray]:
    """Return the run's starting graph as agent positions (agent id - 1) and relations."""
    return con.execute("""
        SELECT a.agent_id - 1 AS pa, b.agent_id - 1 AS pb, e.relation AS r FROM run_edges e
        JOIN run_agents a ON a.run_id = e.run_id AND a.persona_id = e.src
        JOIN run_agents b ON b.run_id = e.run_id AND b.persona_id = e.dst
        WHERE e.run_id = ? ORDER BY e.src, e.dst""", [run_id]).fetchnumpy()


def applied_edge_changes(con: duckdb.DuckDBPyConnection, run_id: str,
                         done: int) -> list[tuple[str, str, str, str | None]]:
    """Return the edge interventions applied up to a step, in order."""
    return [tuple(r) for r in con.execute(
        "SELECT action, persona_id, other_persona_id, relation FROM interventions WHERE run_id = ? "
        "AND step <= ? AND applied AND action IN ('add_edge', 'remove_edge') "
        "ORDER BY step, intervention_index", [run_id, done]).fetchall()]


def next_indexes(con: duckdb.DuckDBPyConnection, run_id: str, events: int,
                 interventions: int) -> tuple[int, int]:
    """Return the numbers the next injected event and intervention rows take."""
    last_event = scalar(con, "SELECT coalesce(max(event_index), -1) FROM events WHERE run_id = ?",
                        [run_id])
    last_x = scalar(con, "SELECT coalesce(max(intervention_index), -1) FROM interventions "
                         "WHERE run_id = ?", [run_id])
    return max(events, int(last_event) + 1), max(interventions, int(last_x) + 1)


def latest_states(con: duckdb.DuckDBPyConnection, run_id: str, done: int,
                  agent_ids: Sequence[int] | None = None) -> dict[int, Any]:
    """Each checkpointed agent's latest state up to a step, by agent id."""
    only, params = "", [run_id, done]
    if agent_ids is not None:
        only, params = " AND list_contains(?, agent_id)", [*params, list(agent_ids)]
    rows = con.execute("SELECT agent_id, arg_max(state, step) FROM agent_states "
                       f"WHERE run_id = ? AND step <= ?{only} GROUP BY agent_id", params).fetchall()
    return {int(a): json.loads(s) for a, s in rows}


def run_agent(con: duckdb.DuckDBPyConnection, run_id: str, *, agent_id: int | None = None,
              persona_id: str | None = None) -> tuple[int, str] | None:
    """(agent id, persona id) of the agent with that agent id or playing that persona."""
    column, value = ("agent_id", agent_id) if agent_id is not None else ("persona_id", persona_id)
    rows = con.execute(f"SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? AND "
                       f"{column} = ?", [run_id, value]).fetchall()
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def agent_count(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """How many agents the run has."""
    return int(scalar(con, "SELECT count(*) FROM run_agents WHERE run_id = ?", [run_id]))


def agents_playing(con: duckdb.DuckDBPyConnection, run_id: str, persona_ids: Sequence[str],
                   limit: int | None = None) -> list[tuple[int, str]]:
    """(agent id, persona id) of the agents playing these personas, in agent-id order."""
    con.register("_playing_ids", pa.table({"id": pa.array(list(persona_ids), type=pa.string())}))
    try:
        sql = ("SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? AND persona_id IN "
               "(SELECT id FROM _playing_ids) ORDER BY agent_id")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = con.execute(sql, [run_id]).fetchall()
    finally:
        con.unregister("_playing_ids")
    return [(int(a), str(p)) for a, p in rows]


def kept_emissions(con: duckdb.DuckDBPyConnection, run_id: str,
                   done: int) -> Iterator[list[tuple[str, str, str]]]:
    """Return the kept emissions up to a step in indexing order, in chunks to bound memory."""
    result = con.execute("SELECT emission_id, task, text FROM emissions WHERE run_id = ? "
                         "AND step <= ? AND NOT is_duplicate ORDER BY step, agent_id", [run_id, done])
    while rows := result.fetchmany(_RESTORE_CHUNK):
        yield rows


def emission_texts(con: duckdb.DuckDBPyConnection) -> Callable[[Sequence[str]], list[str]]:
    """Read committed emissions' texts back by id, instead of keeping them in memory."""
    def read(ids: Sequence[str]) -> list[str]:
        found: dict[str, str] = {}
        for lo in range(0, len(ids), 1000):  # constants: a filter in the scan, not a join
            part = list(ids[lo : lo + 1000])
            found.update(con.execute("SELECT emission_id, text FROM emissions WHERE emission_id "
                                     f"IN ({', '.join('?' * len(part))})", part).fetchall())
        return [found[i] for i in ids]
    return read



def run_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """Return a run's totals, read back from its tables (resumes included)."""
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return con.execute(sql, [run_id]).fetchall()

    def count(table: str, where: str = "") -> int:
        return int(rows(f"SELECT count(*) FROM {table} WHERE run_id = ?{where}")[0][0])

    steps, failed, pooled, drawn = rows(
        "SELECT coalesce(max(step), 0), coalesce(sum(n_failed), 0), "
        "coalesce(sum(n_archetype_calls), 0), coalesce(sum(n_drawn), 0) FROM steps "
        "WHERE run_id = ?")[0]
    kinds = rows("SELECT task, count(*) FROM emissions WHERE run_id = ? GROUP BY 1 ORDER BY 1")
    return {"agents": count("run_agents"), "edges": count("run_edges"), "steps": int(steps),
            "failed_actions": int(failed), "emissions_by_kind": {k: int(n) for k, n in kinds},
            "duplicates": count("emissions", " AND is_duplicate"), "messages": count("messages"),
            "answers": count("survey_answers"), "events": count("events"),
            "calls": call_counts(con, run_id=run_id), "archetype_calls": int(pooled),
            "drawn": int(drawn)}


SURVEY_SHARES = 5  # answers a summary names per survey; more are cut to the top SURVEY_TOP
SURVEY_TOP = 3


def survey_lines(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """One line per survey at the last step it was asked: the question and its answers' shares,
    every answer given when there are at most SURVEY_SHARES (the shares sum to 100%), else the
    top SURVEY_TOP and how many answers there were ("top 3 of 10 answers"), and, for a survey
    answered through a survey profile, the profile's id."""
    rows = con.execute("""
        WITH last AS (SELECT survey_id, max(step) AS step FROM survey_answers WHERE run_id = ?
                      GROUP BY 1)
        SELECT a.survey_id, a.step, any_value(a.question),
               coalesce(a.answer_choice, CAST(a.answer_scale AS VARCHAR), a.answer_text, '?'),
               count(*) AS n, string_agg(DISTINCT a.content->>'profile', ', ')
        FROM survey_answers a JOIN last USING (survey_id, step)
        WHERE a.run_id = ? GROUP BY 1, 2, 4 ORDER BY 1, n DESC, 4""", [run_id, run_id]).fetchall()
    surveys: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        surveys.setdefault(str(row[0]), []).append(row)
    lines = []
    for survey_id, answers in surveys.items():
        total = sum(int(r[4]) for r in answers)
        shown = answers if len(answers) <= SURVEY_SHARES else answers[:SURVEY_TOP]
        shares = ", ".join(f"{r[3]} {int(r[4]) / total:.0%}" for r in shown)
        top = "" if len(shown) == len(answers) else \
            f"top {len(shown)} of {len(answers)} answers given, "
        profiles = sorted({p for r in answers if r[5] for p in str(r[5]).split(", ")})
        through = f"; answered by survey profile {', '.join(profiles)}" if profiles else ""
        lines.append(f"{survey_id}, step {answers[0][1]}: \"{answers[0][2]}\" {shares} "
                     f"({top}of {total} answers{through})")
    return lines



def delivered_events(con: duckdb.DuckDBPyConnection,
                     run_id: str) -> list[tuple[int, str, str | None, int | None, str]]:
    """Return the events delivered in a run, in step order, with who put each in."""
    return [(int(step), str(text), audience, n, str(source)) for step, text, audience, n, source
            in con.execute(f"SELECT step, text, audience, n_recipients, {SOURCE} "
                           "FROM events WHERE run_id = ? ORDER BY step, event_index",
                           [run_id]).fetchall()]


def _literal(text: str) -> str:
    """Return a SQL string literal (COPY takes no parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def export_ranges(agents: int, size: int | None = None) -> list[tuple[int, int]]:
    """Return agent ids 1..agents as the [lo, hi) ranges an export writes a piece each, of
    ``size`` agents (default ``EXPORT_RANGE``)."""
    size = EXPORT_RANGE if size is None else size
    if size < 1:
        raise ValueError(f"an export range holds at least one agent, not {size}")
    return [(lo, min(lo + size, agents + 1)) for lo in range(1, agents + 1, size)]


#: the temporary table an export's rows wait in before their sort
_EXPORT_ROWS: Final = "_export_rows"


def _export(con: duckdb.DuckDBPyConnection, folder: str, agents: int, select: str,
            order: str = "agent_id") -> None:
    """Write ``select``'s rows (an ``agent_id`` column, any order) sorted by ``order`` to a
    Parquet piece per export range in ``folder``, named so that the pieces sort in agent-id
    order; a range without rows gets an empty piece.

    DuckDB runs the query once into a temporary table, then sorts that table, on one thread:
    each step alone spills past the pool's room at any population, where the join feeding the
    sort in one statement failed to pin a block at 10,000,000 agents in 96 MiB (and two threads
    failed at 1,000,000). The sorted rows come back ``EXPORT_BATCH`` at a time, so this process
    holds one batch, not a range.
    """
    path = Path(folder)
    shutil.rmtree(path, ignore_errors=True)  # a resume's pieces replace every earlier one
    path.mkdir(parents=True)
    ranges = export_ranges(agents) or [(1, 1)]
    with one_thread(con):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_EXPORT_ROWS} AS {select}")
        try:
            reader = con.sql(f"SELECT * FROM {_EXPORT_ROWS} ORDER BY {order}"
                             ).to_arrow_reader(EXPORT_BATCH)
            _write_pieces(path, ranges, reader)
        finally:
            con.execute(f"DROP TABLE IF EXISTS {_EXPORT_ROWS}")


def _write_pieces(path: Path, ranges: list[tuple[int, int]],
                  reader: pa.RecordBatchReader) -> None:
    """Write the reader's rows (in agent-id order) to a piece per range, closing the reader."""
    import pyarrow.parquet as pq

    at, writer = 0, None
    try:
        for batch in reader:
            ids = batch.column("agent_id").to_numpy()
            start = 0
            if ids.size and ids[-1] >= ranges[-1][1]:
                raise ValueError(f"export to {path}: agent id {ids[-1]} is past the run's "
                                 f"{ranges[-1][1] - 1} agents")
            while start < batch.num_rows:
                lo, hi = ranges[at]
                end = int(np.searchsorted(ids, hi, side="left"))
                if end > start:
                    if writer is None:
                        writer = pq.ParquetWriter(path / f"part-{lo:012d}.parquet", batch.schema)
                    writer.write_batch(batch.slice(start, end - start))
                if end < batch.num_rows:  # the range is done: close its piece, open the next
                    _close_piece(path, ranges[at][0], writer, batch.schema)
                    at, writer = at + 1, None
                start = end
        for lo, _ in ranges[at:]:
            _close_piece(path, lo, writer, reader.schema)
            writer = None
    finally:
        if writer is not None:
            writer.close()
        reader.close()


def _close_piece(folder: Path, lo: int, writer: Any, schema: pa.Schema) -> None:
    """Close a range's piece, or write it empty when no row of the range came."""
    import pyarrow.parquet as pq

    if writer is not None:
        writer.close()
    else:
        pq.write_table(schema.empty_table(), folder / f"part-{lo:012d}.parquet")


def export_population(con: duckdb.DuckDBPyConnection, run_id: str, folder: str) -> int:
    """Write a run's agents (id, persona id, text, attributes, archetype) to Parquet pieces in
    ``folder``, each a range of agent ids in order, for shards to read their ranges; returns how
    many."""
    agents = agent_count(con, run_id)
    run = _literal(run_id)
    _export(con, folder, agents, f"""
        SELECT a.agent_id, a.persona_id, p.text, p.attributes,
               coalesce(x.archetype, 0) AS archetype
        FROM (SELECT agent_id, persona_id FROM run_agents WHERE run_id = {run}) a
        JOIN ({PERSONA_TEXTS}) p USING (persona_id)
        LEFT JOIN (SELECT persona_id, archetype FROM run_agent_archetypes
                   WHERE run_id = {run}) x USING (persona_id)""")
    return agents


def export_states(con: duckdb.DuckDBPyConnection, run_id: str, done: int, agents: int,
                  folder: str) -> None:
    """Write each checkpointed agent's latest state up to a step to Parquet pieces in
    ``folder``, a range of agent ids each."""
    _export(con, folder, agents, f"""
        SELECT agent_id, arg_max(state, step)::VARCHAR AS state FROM agent_states
        WHERE run_id = {_literal(run_id)} AND step <= {int(done)}
        GROUP BY agent_id""")


def export_adjacency(con: duckdb.DuckDBPyConnection, run_id: str, agents: int,
                     folder: str) -> None:
    """Write a run's starting graph as agent ids, each edge both ways (agent id, neighbour), in
    agent-id order, to Parquet pieces in ``folder`` (a range of agent ids each), for shards to
    read their agents' neighbours."""
    run = _literal(run_id)
    _export(con, folder, agents, f"""
        WITH ids AS (SELECT persona_id, agent_id FROM run_agents WHERE run_id = {run}),
             ends AS (SELECT n.agent_id, e.dst AS other FROM run_edges e
                      JOIN ids n ON n.persona_id = e.src WHERE e.run_id = {run}
                      UNION ALL
                      SELECT n.agent_id, e.src FROM run_edges e
                      JOIN ids n ON n.persona_id = e.dst WHERE e.run_id = {run})
        SELECT DISTINCT x.agent_id::INTEGER AS agent_id, i.agent_id::INTEGER AS neighbour
        FROM ends x JOIN ids i ON i.persona_id = x.other
        WHERE x.agent_id <> i.agent_id""", order="agent_id, neighbour")


#: the columns a step's shard files hold, per table
STEP_FILE_COLUMNS: Final = {
    "emissions": ("emission_id, run_id, step, agent_id, persona_id, task, content, text, "
                  "target_persona_id, model, is_duplicate, duplicate_of, archetype"),
    "survey_answers": ("run_id, step, survey_id, question, persona_id, agent_id, answer_kind, "
                       "answer_choice, answer_scale, answer_text, content"),
    "agent_states": "run_id, agent_id, step, state",
    "messages": ("message_id, run_id, step, sender_id, receiver_id, text, reply_to, "
                 "emission_id, thread_id"),
}


def commit_step_files(con: duckdb.DuckDBPyConnection, run_id: str, step: int,
                      files: Mapping[str, Sequence[str]]) -> None:
    """Insert a step's rows from its shards' Parquet files, in the caller's transaction, and
    name each event's recipients from the shards' deliveries."""
    for table, columns in STEP_FILE_COLUMNS.items():
        paths = list(files.get(table, ()))
        if paths:
            con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM "
                        "read_parquet(?)", [paths])
    delivered = list(files.get("deliveries", ()))
    if delivered:
        con.execute("""
            UPDATE events SET recipients = d.recipients FROM (
                SELECT event_index, to_json(list(persona_id ORDER BY agent_id)) AS recipients
                FROM read_parquet(?) GROUP BY event_index) d
            WHERE events.run_id = ? AND events.step = ? AND events.event_index = d.event_index""",
                    [delivered, run_id, step])
    con.execute("UPDATE events SET recipients = '[]' WHERE run_id = ? AND step = ? "
                "AND recipients IS NULL", [run_id, step])
