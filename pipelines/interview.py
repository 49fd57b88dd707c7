"""Interviews: put a question to a run's agents, answered from each agent's stored state at a step.

Why a separate path, not a scenario step: an interview must not change the run. So it reads the
run read-only — the agent's persona text (``set_persona`` interventions included), memory and
messages in view from ``agent_states`` (the latest row with step ≤ N: states are stored only for
agents that changed), and the world from the run's recorded configuration — asks one structured
call per agent (purpose ``interview``, concurrently, within the client's limits), and then writes
only ``interviews`` rows and their ``llm_calls`` records, in one transaction.

Every input is checked before any model call or write (unknown run or agent, a step outside
0..steps done, an empty question, a group that matches nobody), so a bad input writes nothing.
The scenario file is never executed: what a prompt needs is in ``runs.config``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from personahub.agents.prompts.agent import interview_messages
from personahub.agents.prompts.budget import PromptBudget
from personahub.agents.tasks.interview import InterviewAnswer
from personahub.core.commit import JobRef, commit_batch
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError
from personahub.core.jobs_store import find_job
from personahub.core.store import connect
from personahub.personas.sampling import HubQuery, matching_ids
from personahub.sim.memory import AgentMemory, Message
from personahub.sim.scenario import Memory

PURPOSE = "interview"


@dataclass(frozen=True, kw_only=True)
class InterviewRequest:
    """Who is asked what: one agent (``agent``: a persona id of the run, or an agent id 1..N) or a
    group (``where``, an SQL condition over ``personas``, and/or ``carve`` conditions
    ``KEY OP VALUE``, over the run's agents; at most ``limit`` of them, in agent-id order), at
    ``step`` (None: the run's last committed step)."""

    run_id: str
    question: str
    agent: str | None = None
    where: str | None = None
    carve: tuple[str, ...] = ()
    step: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "carve", tuple(self.carve))
        if not self.question.strip():
            raise PersonahubError("interview: the question is empty; give the question to ask")
        group = self.where is not None or bool(self.carve)
        if self.agent is not None and group:
            raise PersonahubError("interview: give --agent for one agent or --carve/--personas for "
                                  "a group, not both")
        if self.agent is None and not group:
            raise PersonahubError("interview: give --agent PERSONA_ID (or an agent id), or "
                                  "--carve/--personas to ask a group")
        if self.limit is not None and self.limit < 1:
            raise PersonahubError(f"interview: --limit must be >= 1, got {self.limit}")
        if self.step is not None and self.step < 0:
            raise PersonahubError(f"--step {self.step}: steps are 0 (before the first) or more")
        HubQuery(where=self.where, carve=self.carve).conditions()  # syntax, before the database


@dataclass(frozen=True)
class RunFacts:
    """What a prompt needs of the run, read from ``runs``: never by executing the scenario."""

    run_id: str
    seed: int
    steps_done: int
    world: str
    budget: PromptBudget
    memory: Memory
    inbox_size: int


@dataclass
class AgentAt:
    """One agent as it was after a step: its persona text and rebuilt memory."""

    agent_id: int
    persona_id: str
    persona_text: str
    memory: AgentMemory


@dataclass
class InterviewResult:
    """What one interview call wrote: its batch id, the rows (in agent-id order), the engine."""

    batch_id: str
    run_id: str
    step: int
    question: str
    model: str
    offline: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] != "ok")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def run_facts(con: duckdb.DuckDBPyConnection, run_id: str) -> RunFacts:
    """The run's seed, steps done, world, prompt budget and memory sizes (unknown run: error)."""
    job = find_job(con, run_id)
    rows = con.execute("SELECT steps_done FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if job is None or not rows:
        raise PersonahubError(f"--run {run_id}: no such run in this database")
    seed, done, config = job.seed, rows[0][0], job.config
    scenario = config.get("scenario") or {}
    known = {f.name for f in dataclasses.fields(Memory)}
    memory = Memory(**{k: v for k, v in (scenario.get("memory") or {}).items() if k in known})
    budget_known = {f.name for f in dataclasses.fields(PromptBudget)}
    budget = PromptBudget(**{k: v for k, v in (scenario.get("prompt_budget") or {}).items()
                             if k in budget_known})
    return RunFacts(run_id=run_id, seed=int(seed or 0), steps_done=int(done or 0),
                    world=_world(scenario), budget=budget, memory=memory,
                    inbox_size=int(scenario.get("inbox_size", 5)))


def _world(scenario: dict[str, Any]) -> str:
    """The world text as ``Scenario.world_text`` builds it; a world file gone since the run
    leaves the inline world only (an interview should not fail on a moved file)."""
    parts = [str(scenario.get("world") or "").strip()]
    if scenario.get("world_file"):
        path = Path(scenario["world_file"])
        if not path.is_absolute():
            path = Path(scenario.get("base_dir") or ".") / path
        try:
            parts.append(path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):  # gone, or no longer UTF-8 text
            pass
    return "\n\n".join(p for p in parts if p)


def check_step(facts: RunFacts, step: int | None) -> int:
    """The step to read (default: the run's last committed step); outside 0..done is an error."""
    if step is None:
        return facts.steps_done
    if not 0 <= step <= facts.steps_done:
        raise PersonahubError(f"--step {step}: run {facts.run_id} has steps 0..{facts.steps_done} "
                              "(0: before the first step)")
    return step


def select_agents(con: duckdb.DuckDBPyConnection, request: InterviewRequest) -> list[tuple[int, str]]:
    """(agent id, persona id) of the agents asked, in agent-id order; none found is an error."""
    run_id = request.run_id
    if request.agent is not None:
        ref = request.agent.strip()
        by_id = ref.isdigit()
        rows = con.execute("SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? AND "
                           f"{'agent_id' if by_id else 'persona_id'} = ?",
                           [run_id, int(ref) if by_id else ref]).fetchall()
        if not rows and by_id:  # a persona id made of digits
            rows = con.execute("SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? AND "
                               "persona_id = ?", [run_id, ref]).fetchall()
        if not rows:
            n = con.execute("SELECT count(*) FROM run_agents WHERE run_id = ?", [run_id]).fetchall()[0][0]
            raise PersonahubError(f"--agent {ref}: not an agent of run {run_id} (give a persona id "
                                  f"of the run, or an agent id 1..{n})")
        return [(int(rows[0][0]), str(rows[0][1]))]
    query = HubQuery(where=request.where, carve=request.carve)
    ids = matching_ids(con, query)  # user SQL: evaluated in the sandbox, never on ``con``
    con.register("_interview_ids", pa.table({"id": pa.array(ids, type=pa.string())}))
    try:
        sql = ("SELECT agent_id, persona_id FROM run_agents WHERE run_id = ? AND persona_id IN "
               "(SELECT id FROM _interview_ids) ORDER BY agent_id")
        if request.limit is not None:
            sql += f" LIMIT {int(request.limit)}"
        rows = con.execute(sql, [run_id]).fetchall()
    finally:
        con.unregister("_interview_ids")
    if not rows:
        raise PersonahubError(f"{query.describe()}: no agent of run {run_id} matches")
    return [(int(a), str(p)) for a, p in rows]


def agents_at(con: duckdb.DuckDBPyConnection, facts: RunFacts, agents: Sequence[tuple[int, str]],
              step: int) -> list[AgentAt]:
    """Each agent after ``step``: its latest checkpoint with step ≤ ``step`` restored through
    ``AgentMemory.load_state`` (no checkpoint: the hub persona and an empty memory)."""
    ids = [a for a, _ in agents]
    states = dict(con.execute(
        "SELECT agent_id, arg_max(state, step) FROM agent_states WHERE run_id = ? AND step <= ? "
        "AND list_contains(?, agent_id) GROUP BY agent_id", [facts.run_id, step, ids]).fetchall())
    texts = _persona_texts(con, [p for _, p in agents])
    found = []
    for agent_id, persona_id in agents:
        memory = facts.memory.new_agent_memory(facts.inbox_size)
        text = texts.get(persona_id, "")
        if agent_id in states:
            state = json.loads(states[agent_id])
            text = state.get("persona_text", text)
            memory.load_state(state["memory"])
        found.append(AgentAt(agent_id, persona_id, text, memory))
    return found


def _persona_texts(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(con.execute("SELECT persona_id, text FROM personas WHERE list_contains(?, persona_id)",
                            [list(dict.fromkeys(ids))]).fetchall())


def prompt_for(facts: RunFacts, agent: AgentAt, step: int, question: str,
               senders: dict[str, str]) -> list[Any]:
    """The interview prompt: the run's world, the step's events, the agent's persona, memory,
    messages in view (``senders``: persona text by id) and own latest output, then the question,
    within the run's prompt budget."""
    inbox: list[Message] = list(agent.memory.inbox)
    return interview_messages(
        persona=agent.persona_text, question=question, world=facts.world,
        events=agent.memory.current_events(step),
        inbox=[(senders.get(m.sender_id, ""), m.text) for m in inbox],
        memory=agent.memory.prompt_lines(step), recent=agent.memory.recent_own(),
        budget=facts.budget)


@dataclass
class Prepared:
    """A checked request with its prompts, ready to ask (nothing written yet)."""

    request: InterviewRequest
    facts: RunFacts
    step: int
    agents: list[AgentAt]
    prompts: list[list[Any]]


def prepare(db: Path | str, request: InterviewRequest) -> Prepared:
    """Check the request against the database (read-only) and build every prompt."""
    con = connect(db, read_only=True)
    try:
        facts = run_facts(con, request.run_id)
        step = check_step(facts, request.step)
        chosen = select_agents(con, request)
        agents = agents_at(con, facts, chosen, step)
        senders = _persona_texts(con, [m.sender_id for a in agents for m in a.memory.inbox])
        prompts = [prompt_for(facts, a, step, request.question, senders) for a in agents]
    finally:
        con.close()
    return Prepared(request, facts, step, agents, prompts)


async def ask(client: StructuredCaller, prepared: Prepared) -> list[StructuredResult[Any]]:
    """One structured call per agent, all at once: the client's limits pace them. ``step`` is
    not passed, so the calls' ``llm_calls`` rows stay out of the run's step metrics."""
    return list(await asyncio.gather(*[
        client.structured(InterviewAnswer, prompt, purpose=PURPOSE, persona_id=agent.persona_id)
        for agent, prompt in zip(prepared.agents, prepared.prompts, strict=True)]))


def write(db: Path | str, client: StructuredCaller, prepared: Prepared,
          results: Sequence[StructuredResult[Any]]) -> InterviewResult:
    """Store the answers and their call records in one transaction; only ``interviews`` and
    ``llm_calls`` gain rows."""
    request = prepared.request
    batch_id = "iv-" + uuid.uuid4().hex[:12]
    out = InterviewResult(batch_id, request.run_id, prepared.step, request.question, client.label,
                          client.is_offline)
    created = _now()
    for agent, result in zip(prepared.agents, results, strict=True):
        content = result.value.model_dump() if result.value is not None else None
        last = result.records[-1] if result.records else None
        out.rows.append({
            "interview_id": uuid.uuid4().hex, "batch_id": batch_id, "run_id": request.run_id,
            "agent_id": agent.agent_id, "persona_id": agent.persona_id, "step": prepared.step,
            "question": request.question, "answer": content["reply"] if content else None,
            "status": "ok" if content else "failed",
            "error": None if content else (getattr(last, "error", None) or "no valid answer"),
            "content": content, "model": client.label, "created_at": created,
        })
    con = connect(db)
    try:
        commit_batch(con, JobRef("interview", batch_id, run_id=request.run_id), client,
                     {"interviews": out.rows}, results)
    finally:
        con.close()
    return out


def interview(db: Path | str, request: InterviewRequest, client: StructuredCaller) -> InterviewResult:
    """Check, ask and store one interview (one agent or a group) on an event loop of its own."""
    from personahub.core.loop import job_loop

    prepared = prepare(db, request)
    with job_loop() as loop:
        results = loop.run(ask(client, prepared))
    return write(db, client, prepared, results)
