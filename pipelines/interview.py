"""Interviews: put a question to a run's agents, answered from each agent's stored state at a step.

An interview must not change the run: it reads the agents' stored states and the recorded
config (it never executes the scenario) and writes only interview rows and their calls. A resume
asks only the agents not yet answered (or failed), at the step fixed at start; a bad input writes
nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from personahub.agents.prompts.agent import interview_messages
from personahub.agents.prompts.budget import PromptBudget
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.jobs_store import find_job
from personahub.core.kernel import BatchOutcome, JobContext, engine, register
from personahub.core.store import DEFAULT_DB, connect
from personahub.core.validate import check_int, check_seed, read_text_file
from personahub.personas.sampling import HubQuery, matching_ids
from personahub.personas.store import fetch_personas
from personahub.pipelines.batches import remaining
from personahub.pipelines.model_fields import ExecutorFields, GenerationFields, ModelFields
from personahub.pipelines.provider_batch_jobs import BatchFields
from personahub.pipelines.shipped_spec import ShippedSpec
from personahub.sim.memory import AgentMemory, Message
from personahub.sim.scenario import Memory
from personahub.sim.store import (
    agent_count,
    agents_playing,
    latest_states,
    run_agent,
    run_record,
    steps_done,
)
from personahub.tasks.interview import InterviewAnswer

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

PURPOSE = "interview"
INTERVIEW_MAX_TOKENS = 240  # output limit of an interview answer


@dataclass(frozen=True, kw_only=True)
class InterviewRequest:
    """Who is asked what, and at which step (None: the last committed step). Either one agent, or a
    group picked by SQL and/or carve conditions (at most `limit` agents, in agent-id order).
    """

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
            raise UsageError("interview: the question is empty; give the question to ask")
        group = self.where is not None or bool(self.carve)
        if self.agent is not None and group:
            raise UsageError("interview: give --agent for one agent or --carve/--personas for "
                             "a group, not both")
        if self.agent is None and not group:
            raise UsageError("interview: give --agent PERSONA_ID (or an agent id), or "
                             "--carve/--personas to ask a group")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"interview: --limit must be >= 1, got {self.limit}")
        if self.step is not None and self.step < 0:
            raise UsageError(f"--step {self.step}: steps are 0 (before the first) or more")
        HubQuery(where=self.where, carve=self.carve).conditions()  # syntax, before the database


@dataclass(frozen=True)
class RunFacts:
    """What a prompt needs of the run, read from its stored record, never by executing the scenario.
    """

    run_id: str
    seed: int
    steps_done: int
    world: str
    budget: PromptBudget
    memory: Memory
    inbox_size: int
    arm_world: str = ""  # an experiment arm's world text (between worlds), after world


@dataclass
class AgentAt:
    """One agent as it was after a step: its persona text and rebuilt memory."""

    agent_id: int
    persona_id: str
    persona_text: str
    memory: AgentMemory


@dataclass
class InterviewResult:
    """What one interview wrote: its batch id, the rows (in agent-id order), and the model."""

    batch_id: str
    run_id: str
    step: int
    question: str
    model: str
    offline: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    batches: str | None = None  # --provider-batch: what its provider batches did in this run
    # agent id -> its persona text at the step: who is speaking
    personas: dict[int, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] != "ok")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def run_facts(con: duckdb.DuckDBPyConnection, run_id: str) -> RunFacts:
    """Return the run's seed, steps done, world, prompt budget and memory sizes; an unknown run is an error.
    """
    job = find_job(con, run_id)
    if job is None or run_record(con, run_id) is None:
        raise PersonahubError(f"--run {run_id}: no such run in this database")
    seed, done, config = job.seed, steps_done(con, run_id), job.config
    scenario = config.get("scenario") or {}
    known = {f.name for f in dataclasses.fields(Memory)}
    memory = Memory(**{k: v for k, v in (scenario.get("memory") or {}).items() if k in known})
    budget_known = {f.name for f in dataclasses.fields(PromptBudget)}
    budget = PromptBudget(**{k: v for k, v in (scenario.get("prompt_budget") or {}).items()
                             if k in budget_known})
    return RunFacts(run_id=run_id, seed=int(seed or 0), steps_done=int(done or 0),
                    world=_world(scenario), budget=budget, memory=memory,
                    inbox_size=int(scenario.get("inbox_size", 5)),
                    arm_world=str(scenario.get("arm_world") or ""))


def _world(scenario: dict[str, Any]) -> str:
    """Return the world text as the scenario builds it. If the world file has gone since the run, only the
    inline world is used, so an interview does not fail on a moved file.
    """
    parts = [str(scenario.get("world") or "").strip()]
    if scenario.get("world_file"):
        path = Path(scenario["world_file"])
        if not path.is_absolute():
            path = Path(scenario.get("base_dir") or ".") / path
        try:
            parts.append(read_text_file(path, "world_file").strip())
        except PersonahubError:  # gone, or no longer a UTF-8 text file
            pass
    return "\n\n".join(p for p in parts if p)


def check_step(facts: RunFacts, step: int | None) -> int:
    """Return the step to read (default: the run's last committed step); one the run has not reached is an
    error.
    """
    if step is None:
        return facts.steps_done
    if not 0 <= step <= facts.steps_done:
        raise PersonahubError(f"--step {step}: run {facts.run_id} has steps 0..{facts.steps_done} "
                              "(0: before the first step)")
    return step


def select_agents(con: duckdb.DuckDBPyConnection, request: InterviewRequest) -> list[tuple[int, str]]:
    """Select the (agent id, persona id) pairs asked, in agent-id order; finding none is an error."""
    run_id = request.run_id
    if request.agent is not None:
        ref = request.agent.strip()
        found = run_agent(con, run_id, agent_id=int(ref)) if ref.isdigit() else None
        if found is None:  # a persona id (one made of digits too)
            found = run_agent(con, run_id, persona_id=ref)
        if found is None:
            raise PersonahubError(f"--agent {ref}: not an agent of run {run_id} (give a persona id "
                                  f"of the run, or an agent id 1..{agent_count(con, run_id)})")
        return [found]
    query = HubQuery(where=request.where, carve=request.carve)
    ids = matching_ids(con, query)  # user SQL runs in the sandbox, never on this connection
    rows = agents_playing(con, run_id, ids, request.limit)
    if not rows:
        raise PersonahubError(f"{query.describe()}: no agent of run {run_id} matches")
    return rows


def agents_at(con: duckdb.DuckDBPyConnection, facts: RunFacts, agents: Sequence[tuple[int, str]],
              step: int) -> list[AgentAt]:
    """Each agent as it was after the step, from its latest checkpoint at or before it (else the
    hub persona and an empty memory).
    """
    states = latest_states(con, facts.run_id, step, [a for a, _ in agents])
    texts = _persona_texts(con, [p for _, p in agents])
    found = []
    for agent_id, persona_id in agents:
        memory = facts.memory.new_agent_memory(facts.inbox_size)
        text = texts.get(persona_id, "")
        if agent_id in states:
            state = states[agent_id]
            text = state.get("persona_text", text)
            memory.load_state(state["memory"])
        found.append(AgentAt(agent_id, persona_id, text, memory))
    return found


def _persona_texts(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, str]:
    """Return the text of each persona id (read through the persona store)."""
    return {p.persona_id: p.text for p in fetch_personas(con, list(dict.fromkeys(ids)))} \
        if ids else {}


def prompt_for(facts: RunFacts, agent: AgentAt, step: int, question: str,
               senders: dict[str, str]) -> list[BaseMessage]:
    """Return the interview prompt: world, the step's events, persona, memory, messages in view and own
    latest output, then the question, within the run's prompt budget.
    """
    inbox: list[Message] = list(agent.memory.inbox)
    return interview_messages(
        persona=agent.persona_text, question=question, world=facts.world,
        arm_world=facts.arm_world, events=agent.memory.current_events(step),
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
    prompts: list[list[BaseMessage]]


def prepare(db: Path | str, request: InterviewRequest) -> Prepared:
    """Check the request against the database read-only and build every prompt, before the job opens
    the database for writing, so a bad input writes nothing.
    """
    con = connect(db, read_only=True)
    try:
        return _prepared(con, request)
    finally:
        con.close()


async def ask(client: StructuredCaller, prepared: Prepared) -> list[StructuredResult[Any]]:
    """One structured call per agent, paced by the client. The calls carry no step, so they stay
    out of the run's step metrics.
    """
    return list(await asyncio.gather(*[
        client.structured(InterviewAnswer, prompt, purpose=PURPOSE, persona_id=agent.persona_id,
                          max_tokens=INTERVIEW_MAX_TOKENS)
        for agent, prompt in zip(prepared.agents, prepared.prompts, strict=True)]))


def _prepared(con: duckdb.DuckDBPyConnection, request: InterviewRequest,
              step: int | None = None,
              chosen: Sequence[tuple[int, str]] | None = None) -> Prepared:
    """Run prepare on an open connection; a resumed job passes its fixed step and agents."""
    facts = run_facts(con, request.run_id)
    at = check_step(facts, request.step if step is None else step)
    agents = agents_at(con, facts, chosen if chosen is not None else select_agents(con, request), at)
    senders = _persona_texts(con, [m.sender_id for a in agents for m in a.memory.inbox])
    prompts = [prompt_for(facts, a, at, request.question, senders) for a in agents]
    return Prepared(request, facts, at, agents, prompts)



@dataclass(frozen=True, kw_only=True)
class InterviewConfig(InterviewRequest, GenerationFields, BatchFields, ExecutorFields, ModelFields):
    """What an interview asks of whom (the request fields) and, in the engine fields, how this
    invocation asks. A seed of None means the run's seed.
    """

    # InterviewRequest is the first base, so its fields come after the engine ones
    seed: int | None = None
    db: str = engine(DEFAULT_DB)
    batch_size: int = engine(16)  # agents whose answers are committed together

    def __post_init__(self) -> None:
        super().__post_init__()  # the request's own checks
        self.check_model()
        if self.seed is not None:
            check_seed(self.seed)
        self.check_generation()
        check_int(self.batch_size, "--batch-size", low=1)
        self.check_executor()

    def request(self) -> InterviewRequest:
        """Who is asked what, at which step: the request fields alone."""
        return InterviewRequest(**{f.name: getattr(self, f.name)
                                   for f in dataclasses.fields(InterviewRequest)})


def resume_settings(**given: object) -> dict[str, object]:
    """Return what a resume takes from its caller: every engine setting (defaults for those not given),
    except max_failed_share, which stays the job's unless given.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(InterviewConfig)
                if f.metadata.get("engine") and f.name != "max_failed_share"}
    unknown = set(given) - set(defaults) - {"max_failed_share"}
    if unknown:
        raise PersonahubError(f"interview --resume: {', '.join(sorted(unknown))} cannot change "
                              "(the interview keeps what it asks of whom)")
    if given.get("max_failed_share") is None:
        given.pop("max_failed_share", None)
    return {**defaults, **given}


class InterviewAsker:
    """Asks the model one batch of the job's prompts, holding nothing of the database."""

    def __init__(self, prompts: Mapping[int, list[BaseMessage]]) -> None:
        self.prompts = dict(prompts)  # agent id -> its prompt

    async def run_batch(self, batch: Sequence[tuple[int, str]],
                        caller: StructuredCaller) -> list[StructuredResult[Any]]:
        return list(await asyncio.gather(*[
            caller.structured(InterviewAnswer, self.prompts[agent_id], purpose=PURPOSE,
                              persona_id=persona_id, max_tokens=INTERVIEW_MAX_TOKENS)
            for agent_id, persona_id in batch]))

    # ShardCodec: how an answer travels from a Ray worker
    def key(self, agent: tuple[int, str]) -> str:
        return str(agent[0])

    def dump(self, answer: StructuredResult[Any]) -> str:
        return json.dumps(answer.value.model_dump() if answer.value is not None else None)

    def calls(self, answer: StructuredResult[Any]) -> Sequence[StructuredResult[Any]]:
        return [answer]

    def load(self, agent: tuple[int, str], value: str,
             calls: list[StructuredResult[Any]]) -> StructuredResult[Any]:
        content = json.loads(value)
        call = calls[0]
        return dataclasses.replace(
            call, value=InterviewAnswer.model_validate(content) if content is not None else None)


@dataclass
class InterviewState:
    """One interview's own state: its prepared request (step and agents fixed)."""

    prepared: Prepared


def _state(ctx: JobContext[InterviewConfig]) -> InterviewState:
    state: InterviewState = ctx.state
    return state


class InterviewSpec(ShippedSpec[InterviewConfig, Sequence[tuple[int, str]],
                             list[StructuredResult[Any]], InterviewResult], kind="interview"):
    """The job spec behind personahub interview."""

    config_type = InterviewConfig
    independent_batches = True  # the agents' batches are planned ahead: Ray may ship them all

    def belongs_to(self, config: InterviewConfig) -> str | None:
        return config.run_id

    def prepare(self, ctx: JobContext[InterviewConfig]) -> None:
        """Prepare the run's facts, the fixed step and agents, and every prompt; a seed of None becomes the
        run's seed.
        """
        stored = ctx.stored
        chosen = ([(int(a), str(p)) for a, p in stored["agents"]]
                  if ctx.resumed and "agents" in stored else None)
        prepared = _prepared(ctx.con, ctx.config.request(),
                             step=stored.get("at_step") if ctx.resumed else None, chosen=chosen)
        stored["at_step"] = prepared.step
        stored["agents"] = [[a.agent_id, a.persona_id] for a in prepared.agents]
        if ctx.config.seed is None:
            ctx.config = dataclasses.replace(ctx.config, seed=prepared.facts.seed)
        ctx.state = InterviewState(prepared)
        ctx.total = len(prepared.agents)

    def plan(self, ctx: JobContext[InterviewConfig]) -> Iterator[Sequence[tuple[int, str]]]:
        """Plan the agents without an answer yet, in batches (a failed answer is asked again)."""
        agents = [(a.agent_id, a.persona_id) for a in _state(ctx).prepared.agents]
        done = {r[0] for r in ctx.con.execute(
            "SELECT agent_id FROM interviews WHERE batch_id = ? AND status = 'ok'",
            [ctx.job_id]).fetchall()}
        return remaining(ctx, agents, done, lambda agent: agent[0], ctx.config.batch_size)

    def plain_asker(self, ctx: JobContext[InterviewConfig]) -> InterviewAsker:
        """Return the asker of each agent's prepared prompt."""
        prepared = _state(ctx).prepared
        return InterviewAsker(
            {a.agent_id: prompt for a, prompt in zip(prepared.agents, prepared.prompts, strict=True)})

    def commit(self, ctx: JobContext[InterviewConfig], batch: Sequence[tuple[int, str]],
               result: list[StructuredResult[Any]]) -> BatchOutcome:
        """One row per agent asked (failed ones with their error); older failed rows for them go."""
        config, step, label = ctx.config, _state(ctx).prepared.step, ctx.caller.label
        created = _now()
        rows: list[dict[str, object]] = []
        errors: list[str | None] = []
        for (agent_id, persona_id), call in zip(batch, result, strict=True):
            content = call.value.model_dump() if call.value is not None else None
            last = call.records[-1] if call.records else None
            error = None if content else (getattr(last, "error", None) or "no valid answer")
            if error is not None:
                errors.append(error)
            rows.append({
                "interview_id": uuid.uuid4().hex, "batch_id": ctx.job_id, "run_id": config.run_id,
                "agent_id": agent_id, "persona_id": persona_id, "step": step,
                "question": config.question, "answer": content["reply"] if content else None,
                "status": "ok" if content else "failed", "error": error, "content": content,
                "model": label, "created_at": created})
        new = [r["interview_id"] for r in rows]

        def replace_failed() -> None:
            ctx.con.execute("DELETE FROM interviews WHERE batch_id = ? AND status = 'failed' AND "
                            "list_contains(?, agent_id) AND NOT list_contains(?, interview_id)",
                            [ctx.job_id, [a for a, _ in batch], new])

        return BatchOutcome(rows={"interviews": rows}, calls=result, asked=len(batch),
                            kept=len(rows) - len(errors), errors=errors, then=replace_failed)

    def nothing_kept(self, ctx: JobContext[InterviewConfig], asked: int) -> str:
        return f"every one of its {asked} answers failed"

    def stop_note(self, ctx: JobContext[InterviewConfig]) -> str:
        answered = ctx.con.execute("SELECT count(*) FROM interviews WHERE batch_id = ? AND "
                                   "status = 'ok'", [ctx.job_id]).fetchall()[0][0]
        return f" ({answered} of {ctx.total} agents answered)"

    def report(self, summary: InterviewResult, db: Path) -> list[str]:
        answered = len(summary.rows) - summary.failed
        return [f"interview {summary.batch_id} of run {summary.run_id} (step {summary.step}): "
                f"{answered} of {len(summary.rows)} agents answered in {db}",
                *([summary.batches] if summary.batches else [])]

    def summary(self, ctx: JobContext[InterviewConfig]) -> InterviewResult:
        """Every answer of the job (all its runs), in agent-id order."""
        config, prepared = ctx.config, _state(ctx).prepared
        out = InterviewResult(ctx.job_id, config.run_id, prepared.step, config.question,
                              ctx.caller.label, ctx.caller.is_offline,
                              batches=self.batches_line(ctx),
                              personas={a.agent_id: a.persona_text for a in prepared.agents})
        cursor = ctx.con.execute("SELECT * FROM interviews WHERE batch_id = ? ORDER BY agent_id",
                                 [ctx.job_id])
        names = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            if isinstance(row.get("content"), str):
                row["content"] = json.loads(row["content"])
            out.rows.append(row)
        return out


INTERVIEW = register(InterviewSpec())
