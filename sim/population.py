"""One shard of a society's population, held as columns: the same code locally and on a Ray actor.

A shard holds its agents' ids, persona ids and texts, attributes (decoded when an audience needs
them), archetype, draw key, memory entry and, when the scenario has kinds said to a neighbour,
its agents' neighbours in the starting graph (offsets into an array of neighbour agent ids), as
arrays: no Python object per agent. A step is two calls, three with messages. ``open_step``
applies the step's interventions and events, picks the active agents and
their kinds, and says what each (archetype, kind) pool and (survey, archetype) group needs asked.
``close_step`` draws each member's answer from its group's result, updates memories and writes the
shard's rows as Parquet files (complete once renamed), which the driver commits in bulk. With
addressed kinds, ``close_step`` also returns the step's outbox partitioned by the receiver's shard
(each sender's addressee drawn among its neighbours), and ``deliver`` takes the messages sent to
the shard's agents: it writes their emission and message rows, puts each message in its
receiver's inbox (held as columns, ``sim/inbox_columns.py``: the receiver's other memory stays
shared) and writes the agents' states.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personahub.sim.draws import activation_keys, pick, salted_bits, step_draws, uniforms
from personahub.sim.inbox_columns import InboxColumns
from personahub.sim.memory import AgentMemory
from personahub.sim.memory_table import Change, MemoryTable
from personahub.sim.message_rows import addressed_rows
from personahub.sim.population_plan import (
    AudienceRule,
    GroupAsk,
    ShardAsk,
    ShardDone,
    ShareAnswer,
    StepClose,
    StepDeliver,
    StepOpen,
)

PART = ".part"
OWN_CHARS = 300  # what a member remembers of a pooled emission, as an agent of its own output
#: rows built and written at a time, so a shard's step needs a slice's columns, not a table's
ROWS_A_PART = 131_072
KEEP_THREAD = 0.7  # the chance a sender answers its latest message's sender, as SocietyModel's
#: an outbox's columns: sender and receiver agent ids, the sender's persona id, the pool whose
#: text it says, and the message it answers (null: a new thread) with that message's thread
OUTBOX = pa.schema([("sender", pa.int32()), ("receiver", pa.int32()),
                    ("sender_persona", pa.string()), ("pool", pa.int32()),
                    ("reply_to", pa.string()), ("thread_id", pa.string())])


class PopulationShard:
    """The agents of one contiguous range of agent ids, as columns."""

    def __init__(self, *, agent_ids: np.ndarray, persona_ids: pa.Array, texts: pa.Array,
                 attributes: pa.Array, archetypes: np.ndarray, seed: int,
                 new_memory: Callable[[], AgentMemory], offsets: np.ndarray | None = None,
                 neighbours: np.ndarray | None = None) -> None:
        """Args:
            offsets, neighbours: the agents' neighbours (agent ids), agent i's at
                ``neighbours[offsets[i]:offsets[i + 1]]`` (None: nobody has any).
        """
        self.agent_ids = np.asarray(agent_ids, dtype=np.int32)
        self.offsets = (np.zeros(len(self.agent_ids) + 1, dtype=np.int64) if offsets is None
                        else np.asarray(offsets, dtype=np.int64))
        self.neighbours = (np.zeros(0, dtype=np.int32) if neighbours is None
                           else np.asarray(neighbours, dtype=np.int32))
        self.persona_ids = persona_ids
        self.texts = texts
        self._attribute_text = attributes
        self._attributes: dict[str, np.ndarray] = {}
        self.archetypes = np.asarray(archetypes, dtype=np.int32)
        self.keys = _keys(seed, persona_ids)
        self.table = MemoryTable(new_memory)
        self.memory = np.zeros(len(self.agent_ids), dtype=np.int32)
        empty = self.table.memories[0]
        # the inboxes, as columns: the table's memories hold everything else (their inbox empty)
        self.inbox = InboxColumns(len(self.agent_ids), empty.inbox.maxlen or 1)
        self._reflects = empty.reflect  # a message counts towards the next reflection
        self.renamed: dict[int, str] = {}  # position -> persona text set by an intervention
        self._open: dict[str, Any] = {}
        self._closed: dict[str, Any] = {}  # a closed step waiting for its messages

    @property
    def size(self) -> int:
        """Return how many agents the shard holds."""
        return len(self.agent_ids)

    def restore(self, agent_ids: np.ndarray, states: list[str]) -> None:
        """Put checkpointed agents back: each state is an ``agent_states.state`` JSON text."""
        positions = self._positions(np.asarray(agent_ids, dtype=np.int32))
        for position, text in zip(positions.tolist(), states, strict=True):
            state = json.loads(text)
            memory = state["memory"]
            self.inbox.restore(position, memory.get("inbox") or [])
            self.memory[position] = self.table.intern({**memory, "inbox": []})
            if state.get("persona_text") not in (None, self.texts[position].as_py()):
                self.renamed[position] = str(state["persona_text"])

    def footprint(self) -> int:
        """Return the bytes the shard's columns and memories hold (an estimate for the bench)."""
        arrays = (self.agent_ids, self.archetypes, self.keys, self.memory, self.offsets,
                  self.neighbours, *self._attributes.values())
        strings = self.persona_ids.nbytes + self.texts.nbytes + self._attribute_text.nbytes
        memories = sum(len(t) for t in (self.table.text(i) for i in range(len(self.table))))
        return int(sum(a.nbytes for a in arrays) + strings + 4 * memories + self.inbox.nbytes())

    # -- the step's first half ---------------------------------------------------------------------
    def open_step(self, plan: StepOpen) -> ShardAsk:
        """Apply the step's changes and events; say what its groups need asked."""
        step, n = plan.step, self.size
        touched = np.zeros(n, dtype=bool)
        self._intervene(plan, touched)
        seen = np.zeros(n, dtype=np.uint64)
        texts: list[str] = []
        delivered: dict[int, int] = {}
        events: dict[int, np.ndarray] = {}
        for bit, (index, text, rule) in enumerate(
                [*plan.events, *((i, t, AudienceRule()) for i, t in plan.injected)]):
            reached = self.audience(rule)
            self.table.apply(self.memory, reached, ("observe", step, text, "event"))
            touched |= reached
            seen[reached] |= np.uint64(1 << bit)
            texts.append(text)
            delivered[index] = int(reached.sum())
            events[index] = np.flatnonzero(reached)
        active, kinds = self._kinds(plan, self._active(plan))
        rank = salted_bits(self.keys, "history", step)
        groups: list[GroupAsk] = []
        for k, kind in enumerate(plan.kinds):
            members = active[kinds == k]
            groups += self._groups(members, rank, plan.read, ("pool", kind))
        asked: dict[int, np.ndarray] = {}
        for survey in plan.surveys:
            members = np.flatnonzero(self.audience(survey.audience))
            asked[survey.index] = members
            groups += self._groups(members, rank, plan.read, ("survey", survey.index))
        shown: dict[int, int] = {}
        memories: dict[int, str] = {}
        candidates = []
        for group in groups:
            picked = []
            for rank_, position, _, _ in group.candidates:
                bits = int(seen[position])
                entry = int(self.memory[position])
                if self.inbox.held[position]:  # a memory of its own: the shared one, its inbox in
                    entry = -1 - position
                    memories.setdefault(entry, self._memory_text(np.array([position]))[0])
                else:
                    memories.setdefault(entry, self.table.text(entry))
                picked.append((rank_, int(self.agent_ids[position]), entry,
                               shown.setdefault(bits, len(shown))))
            candidates.append(picked)
        for group, picked in zip(groups, candidates, strict=True):
            group.candidates = picked
        seen_texts = [tuple(t for b, t in enumerate(texts) if bits >> b & 1) for bits in shown]
        self._open = {"step": step, "touched": touched, "active": active, "kinds": kinds,
                      "asked": asked, "events": events, "plan": plan}
        lo = int(self.agent_ids[0]) if self.size else 0
        return ShardAsk(n_active=int(active.size), groups=groups, memories=memories,
                        seen=seen_texts, delivered=delivered, span=(lo, lo + self.size))

    def _kinds(self, plan: StepOpen, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draw each active agent's kind; one without neighbours draws no addressed kind, and
        cannot act when every kind is addressed."""
        draws = uniforms(self.keys[active], "kind", plan.step)
        kinds = pick(np.asarray(plan.cumulative), draws)
        if not plan.addressed:
            return active, kinds
        alone = np.diff(self.offsets)[active] == 0
        if plan.alone is None:
            return active[~alone], kinds[~alone]
        kinds[alone] = pick(np.asarray(plan.alone), draws[alone])
        return active, kinds

    def _intervene(self, plan: StepOpen, touched: np.ndarray) -> None:
        for action, agent_id, text in plan.changes:
            found = self._positions(np.array([agent_id], dtype=np.int32), missing_ok=True)
            if found.size == 0:
                continue
            position = int(found[0])
            touched[position] = True
            if action == "set_persona":
                self.renamed[position] = text
            elif action == "add_memory":
                self.table.apply(self.memory, found, ("observe", plan.step, text, "event"))
            elif action == "forget":
                self.table.apply(self.memory, found, ("forget",))
                self.inbox.clear(found)

    def _active(self, plan: StepOpen) -> np.ndarray:
        mode, p = plan.activation
        if mode == "all":
            return np.arange(self.size)
        return np.flatnonzero(step_draws(self.keys, plan.step) < p)

    def _groups(self, members: np.ndarray, rank: np.ndarray, read: int,
                what: tuple[str, object]) -> list[GroupAsk]:
        """Group members by archetype: counts, lowest agent id and the ``read`` lowest ranks.

        A pool's key is ("pool", archetype, kind), a survey group's ("survey", index, archetype).
        """
        if members.size == 0:
            return []
        order = np.lexsort((rank[members], self.archetypes[members]))
        ordered = members[order]
        labels = self.archetypes[ordered]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        ends = np.r_[starts[1:], ordered.size]
        out = []
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            part = ordered[lo:hi]
            first = int(self.agent_ids[part].min())
            chosen = part[:read]
            archetype = int(labels[lo])
            key = (("pool", archetype, what[1]) if what[0] == "pool"
                   else ("survey", what[1], archetype))
            out.append(GroupAsk(key, int(hi - lo), first,
                                [(int(rank[p]), int(p), 0, 0) for p in chosen.tolist()]))
        return out

    # -- the step's second half --------------------------------------------------------------------
    def close_step(self, close: StepClose, shard: int) -> ShardDone:
        """Draw members' answers and actions from their groups' results and write the rows."""
        opened, self._open = self._open, {}
        if opened.get("step") != close.step:
            raise RuntimeError(f"shard {shard}: step {close.step} closed before it was opened")
        plan: StepOpen = opened["plan"]
        touched: np.ndarray = opened["touched"]
        done = ShardDone()
        folder = Path(close.folder)
        folder.mkdir(parents=True, exist_ok=True)
        parts = {"emissions": iter([self._emissions(close, opened, touched, done)]),
                 "survey_answers": self._answers(close, opened, plan, touched, done),
                 "deliveries": iter([self._deliveries(opened["events"])])}
        for name, tables in parts.items():
            written = write_parts(folder / f"{name}-{shard:05d}.parquet", tables)
            if written is not None:
                done.files[name] = [written]
        if plan.addressed:  # the states wait for the messages the shard's agents receive
            self._closed = {"close": close, "touched": touched}
            return done
        self._finish(close, touched, shard, done)
        return done

    def _finish(self, close: StepClose, touched: np.ndarray, shard: int,
                done: ShardDone) -> None:
        written = write_parts(Path(close.folder) / f"agent_states-{shard:05d}.parquet",
                              self._states(close, touched))
        if written is not None:
            done.files["agent_states"] = [written]
        self.table.compact(self.memory)
        self.inbox.compact()
        pa.default_memory_pool().release_unused()  # the slices' buffers, back to the system

    def _emissions(self, close: StepClose, opened: dict[str, Any], touched: np.ndarray,
                   done: ShardDone) -> pa.Table | None:
        active: np.ndarray = opened["active"]
        kinds: np.ndarray = opened["kinds"]
        plan: StepOpen = opened["plan"]
        code = {kind: k for k, kind in enumerate(plan.kinds)}
        by_pool = {(p.archetype, code[p.kind]): i for i, p in enumerate(close.pools)}
        width = len(plan.kinds)
        lookup = np.full((int(self.archetypes.max(initial=0)) + 1) * width, -1, dtype=np.int64)
        for (archetype, k), i in by_pool.items():
            if archetype * width + k < lookup.size:
                lookup[archetype * width + k] = i
        pool = lookup[self.archetypes[active].astype(np.int64) * width + kinds]
        if (pool < 0).any():
            raise RuntimeError(f"step {close.step}: a pool has no answer")
        failed = np.array([p.content is None for p in close.pools], dtype=bool)
        lost = failed[pool]
        for i in np.unique(pool[lost]).tolist():
            answer = close.pools[i]
            reason = f"archetype {answer.archetype}: {answer.error or 'failed'}"
            done.failures[reason] = done.failures.get(reason, 0) + int((pool[lost] == i).sum())
        kept = ~lost
        members, pools = active[kept], pool[kept]
        done.emissions = done.drawn = int(members.size)
        if members.size == 0:
            return None
        changes: list[Change] = [("own", close.step, p.kind, (p.text or "")[:OWN_CHARS])
                                 for p in close.pools]
        self.table.apply_each(self.memory, members, pools, changes)
        touched[members] = True
        if plan.addressed:
            said = np.array([p.kind in plan.addressed for p in close.pools], dtype=bool)[pools]
            done.outbox = self._outbox(close, members[said], pools[said])
            members, pools = members[~said], pools[~said]
            if members.size == 0:
                return None
        return emission_rows(close, self.agent_ids[members],
                             self.persona_ids.take(pa.array(members)), pools)

    # -- messages ----------------------------------------------------------------------------------
    def _outbox(self, close: StepClose, senders: np.ndarray,
                pools: np.ndarray) -> list[pa.Table | None]:
        """Draw each sender's addressee and return the messages by the receiver's shard.

        A sender keeps its latest thread going (answers the sender of the newest message in its
        inbox, when a neighbour) with chance ``KEEP_THREAD``, else speaks to a neighbour drawn
        uniformly (answering that message too if the draw is its sender); both draws are keyed,
        so any shard count draws the same.
        """
        step = close.step
        degree = np.diff(self.offsets)[senders]
        if (degree == 0).any():
            raise RuntimeError(f"step {step}: an agent without neighbours drew an addressed kind")
        u = uniforms(self.keys[senders], "addressee", step)
        picked = self.offsets[senders] + np.minimum((u * degree).astype(np.int64), degree - 1)
        receiver = self.neighbours[picked].astype(np.int64)
        last, replied, thread = self.inbox.newest(senders)
        keep = (last >= 0) & (uniforms(self.keys[senders], "thread", step) < KEEP_THREAD)
        where = np.flatnonzero(keep)
        keep[where] = self._linked(senders[where], last[where])
        receiver = np.where(keep, last, receiver)
        keep |= (last >= 0) & (receiver == last)  # drawn anyway: it answers that message
        mask = pa.array(keep)
        table = pa.table({
            "sender": pa.array(self.agent_ids[senders]),
            "receiver": pa.array(receiver.astype(np.int32)),
            "sender_persona": self.persona_ids.take(pa.array(senders)),
            "pool": pa.array(pools.astype(np.int32)),
            "reply_to": pc.if_else(mask, replied, pa.nulls(senders.size, pa.string())),
            "thread_id": pc.if_else(mask, thread, pa.nulls(senders.size, pa.string())),
        }, schema=OUTBOX)
        bounds = np.asarray(close.bounds or (int(self.agent_ids[0]) if self.size else 0,),
                            dtype=np.int64)
        to = np.searchsorted(bounds, receiver, side="right") - 1
        out: list[pa.Table | None] = []
        for shard in range(bounds.size):
            chosen = np.flatnonzero(to == shard)
            out.append(table.take(pa.array(chosen)) if chosen.size else None)
        return out

    def _linked(self, positions: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Return, per agent at ``positions``, whether ``others`` (agent ids) is its neighbour."""
        degree = np.diff(self.offsets)[positions]
        owner = np.repeat(np.arange(positions.size), degree)
        starts = np.repeat(self.offsets[positions] - np.cumsum(degree) + degree, degree)
        flat = starts + np.arange(int(degree.sum()))
        hit = self.neighbours[flat] == others[owner]
        return np.bincount(owner[hit], minlength=positions.size) > 0

    def deliver(self, deliver: StepDeliver, shard: int) -> ShardDone:
        """Take the messages sent to this shard's agents: write their emission and message
        rows, put each in its receiver's inbox and write the step's states."""
        closed, self._closed = self._closed, {}
        close: StepClose | None = closed.get("close")
        if close is None or close.step != deliver.step:
            raise RuntimeError(f"shard {shard}: step {deliver.step} delivered before it closed")
        touched: np.ndarray = closed["touched"]
        done = ShardDone()
        inbox: pa.Table | None = deliver.inbox
        if inbox is not None and inbox.num_rows:
            inbox = inbox.sort_by([("sender", "ascending")])  # one order for any shard count
            emissions, messages = self._received(close, inbox, touched)
            done.messages = messages.num_rows
            folder = Path(close.folder)
            for name, table in (("emissions", emissions), ("messages", messages)):
                written = write_parts(folder / f"{name}-to-{shard:05d}.parquet", iter([table]))
                if written is not None:
                    done.files[name] = [written]
        self._finish(close, touched, shard, done)
        return done

    def _received(self, close: StepClose, inbox: pa.Table,
                  touched: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """Return the emission and message rows of the messages to this shard's agents, and put
        each message in its receiver's inbox, in the senders' agent-id order."""
        step, n = close.step, inbox.num_rows
        senders = inbox.column("sender").to_numpy()
        positions = self._positions(inbox.column("receiver").to_numpy())
        pools = inbox.column("pool").to_numpy()
        speakers = inbox.column("sender_persona")
        listeners = self.persona_ids.take(pa.array(positions))
        contents, said = addressed_rows(close.pools, pools, speakers, listeners)
        emission_ids = emission_rows_ids(close, senders)
        message_ids = pc.binary_join_element_wise(emission_ids, ":m", "")
        messages = pa.table({
            "message_id": message_ids,
            "run_id": pa.repeat(pa.scalar(close.run_id, pa.string()), n),
            "step": pa.repeat(pa.scalar(step, pa.int32()), n),
            "sender_id": speakers,
            "receiver_id": listeners,
            "text": said,
            "reply_to": inbox.column("reply_to"),
            "emission_id": emission_ids,
            "thread_id": pc.coalesce(inbox.column("thread_id"), message_ids),
        })
        kept = self.inbox.add(messages, senders)
        for where, out in self.inbox.push(positions, kept):
            self._take_in(where, out)
        touched[positions] = True
        emissions = emission_rows(close, senders, speakers, pools, content=contents,
                                  targets=listeners)
        return emissions, messages

    def _take_in(self, positions: np.ndarray, pushed_out: np.ndarray) -> None:
        """Apply to the receivers' memories what a message does besides sitting in the inbox:
        the message each pushed out (-1: none) is retired into the memory."""
        if not self._reflects:  # nothing to count: only the agents that pushed one out change
            positions, pushed_out = positions[pushed_out >= 0], pushed_out[pushed_out >= 0]
        if positions.size == 0:
            return
        text = np.r_[self.inbox.text, -1][pushed_out]  # -1 (none) indexes the -1 put last
        step = np.r_[self.inbox.step, -1][pushed_out]
        keys = np.stack([step.astype(np.int64), text.astype(np.int64)], axis=1)
        distinct, which = np.unique(keys, axis=0, return_inverse=True)
        changes: list[Change] = [("take_in",) if t < 0 else ("take_in", s, self.inbox.texts[t])
                                 for s, t in distinct.tolist()]
        self.table.apply_each(self.memory, positions, which.reshape(-1), changes)

    def _memory_text(self, positions: np.ndarray) -> list[str]:
        """Return the agents' memories as ``AgentMemory.to_state`` JSON text, inboxes in."""
        texts = [self.table.text(m) for m in self.memory[positions].tolist()]
        held = np.flatnonzero(self.inbox.held[positions] > 0)
        if held.size:
            for i, inbox in zip(held.tolist(), self.inbox.inbox_json(positions[held]).to_pylist(),
                                strict=True):
                texts[i] = texts[i].replace(_NO_INBOX, f'"inbox": {inbox}', 1)
        return texts

    def _answers(self, close: StepClose, opened: dict[str, Any], plan: StepOpen,
                 touched: np.ndarray, done: ShardDone) -> Iterator[pa.Table]:
        """Draw each survey's answers and yield their rows a slice at a time."""
        shares: dict[int, dict[int, ShareAnswer]] = {}
        for share in close.shares:
            shares.setdefault(share.survey_index, {})[share.archetype] = share
        for survey in plan.surveys:
            members: np.ndarray = opened["asked"][survey.index]
            if members.size == 0:
                continue
            given = shares.get(survey.index, {})
            labels = self.archetypes[members]
            width = len(survey.values)
            top = int(labels.max()) + 1
            cumulative = np.full((top, width), 2.0)
            ok = np.zeros(top, dtype=bool)
            for archetype, share in given.items():
                if archetype < top and share.cumulative is not None:
                    cumulative[archetype] = share.cumulative
                    ok[archetype] = True
            done.drawn += int(members.size)
            for archetype in np.unique(labels[~ok[labels]]).tolist():
                stated = given.get(archetype)
                error = "archetype call: " + ((stated.error if stated else None)
                                              or "no valid answer")
                reason = f"survey {survey.survey_id}: {error}"
                done.failures[reason] = done.failures.get(reason, 0) + int(
                    (labels == archetype).sum())
            answered = members[ok[labels]]
            if answered.size == 0:
                continue
            draws = uniforms(self.keys[answered], "survey", close.step, survey.survey_id)
            chosen = pick(cumulative[self.archetypes[answered]], draws)
            for lo in range(0, answered.size, ROWS_A_PART):
                yield self._answer_rows(close, survey, answered[lo:lo + ROWS_A_PART],
                                        chosen[lo:lo + ROWS_A_PART])
            done.answers += int(answered.size)
            if survey.remember:
                changes: list[Change] = [
                    ("observe", close.step, f"Asked '{survey.question}', I answered: {value}",
                     "answer") for value in survey.values]
                self.table.apply_each(self.memory, answered, chosen, changes)
                touched[answered] = True

    def _answer_rows(self, close: StepClose, survey: Any, members: np.ndarray,
                     chosen: np.ndarray) -> pa.Table:
        labels = self.archetypes[members]
        width = len(survey.values)
        top = int(labels.max()) + 1
        contents = [json.dumps({"answer": value, "reason": f"drawn from archetype {a}'s shares"},
                               ensure_ascii=False)
                    for a in range(top) for value in survey.values]
        n = members.size
        values = pa.array(list(survey.values)).take(pa.array(chosen))
        choice = values if survey.answer == "choice" else pa.nulls(n, pa.string())
        scale = values.cast(pa.int32()) if survey.answer == "scale" else pa.nulls(n, pa.int32())
        return pa.table({
            "run_id": pa.repeat(pa.scalar(close.run_id, pa.string()), n),
            "step": pa.repeat(pa.scalar(close.step, pa.int32()), n),
            "survey_id": pa.repeat(pa.scalar(survey.survey_id, pa.string()), n),
            "question": pa.repeat(pa.scalar(survey.question, pa.string()), n),
            "persona_id": self.persona_ids.take(pa.array(members)),
            "agent_id": pa.array(self.agent_ids[members]),
            "answer_kind": pa.repeat(pa.scalar(survey.answer, pa.string()), n),
            "answer_choice": choice.cast(pa.string()),
            "answer_scale": scale,
            "answer_text": pa.nulls(n, pa.string()),
            "content": pa.array(contents, pa.string()).take(
                pa.array(labels.astype(np.int64) * width + chosen)),
        })

    def _deliveries(self, events: dict[int, np.ndarray]) -> pa.Table | None:
        parts = [pa.table({"event_index": pa.repeat(pa.scalar(index, pa.int32()), where.size),
                           "agent_id": pa.array(self.agent_ids[where]),
                           "persona_id": self.persona_ids.take(pa.array(where))})
                 for index, where in events.items() if where.size]
        return pa.concat_tables(parts) if parts else None

    def _states(self, close: StepClose, touched: np.ndarray) -> Iterator[pa.Table]:
        """Yield the touched agents' ``agent_states`` rows a slice at a time."""
        everyone = np.flatnonzero(touched)
        for lo in range(0, everyone.size, ROWS_A_PART):
            yield self._state_rows(close, everyone[lo:lo + ROWS_A_PART])

    def _state_rows(self, close: StepClose, positions: np.ndarray) -> pa.Table:
        ids = self.persona_ids.take(pa.array(positions)).to_pylist()
        texts = self.texts.take(pa.array(positions)).to_pylist()
        for i, position in enumerate(positions.tolist()):
            if position in self.renamed:
                texts[i] = self.renamed[position]
        memory = self._memory_text(positions)
        dumps = json.dumps
        states = [f'{{"persona_id": {dumps(p, ensure_ascii=False)}, "persona_text": '
                  f'{dumps(t, ensure_ascii=False)}, "memory": {m}, '
                  f'"pending": []}}' for p, t, m in zip(ids, texts, memory, strict=True)]
        n = positions.size
        return pa.table({"run_id": pa.repeat(pa.scalar(close.run_id, pa.string()), n),
                         "agent_id": pa.array(self.agent_ids[positions]),
                         "step": pa.repeat(pa.scalar(close.step, pa.int32()), n),
                         "state": pa.array(states, pa.string())})

    # -- audiences ---------------------------------------------------------------------------------
    def audience(self, rule: AudienceRule) -> np.ndarray:
        """Return the mask of the shard's agents an audience covers."""
        mask = np.ones(self.size, dtype=bool)
        if rule.agent_ids is not None:
            mask &= np.isin(self.agent_ids, np.asarray(rule.agent_ids, dtype=np.int32))
        if rule.text_contains:
            mask &= self._text_contains(rule.text_contains)
        for name, value in rule.attributes:
            mask &= self._attribute_is(name, value)
        return mask

    def _text_contains(self, needles: tuple[str, ...]) -> np.ndarray:
        lowered = pc.utf8_lower(self.texts)
        found = np.zeros(self.size, dtype=bool)
        for needle in needles:
            found |= np.asarray(pc.fill_null(pc.match_substring(lowered, needle.lower()), False))
        for position, text in self.renamed.items():
            found[position] = any(n.lower() in text.lower() for n in needles)
        return found

    def _attribute_is(self, name: str, value: object) -> np.ndarray:
        values = self._attribute_values(name)
        wanted = json.dumps(value, sort_keys=True)
        return values == wanted

    def _attribute_values(self, name: str) -> np.ndarray:
        """Each agent's value of one attribute as JSON text ('' when absent), decoded once."""
        found = self._attributes.get(name)
        if found is None:
            decoded = [json.loads(t).get(name, _ABSENT) if t else _ABSENT
                       for t in self._attribute_text.to_pylist()]
            found = self._attributes[name] = np.array(
                ["" if v is _ABSENT else json.dumps(v, sort_keys=True) for v in decoded])
        return found

    def _positions(self, agent_ids: np.ndarray, missing_ok: bool = False) -> np.ndarray:
        lo = int(self.agent_ids[0]) if self.size else 0
        positions = agent_ids.astype(np.int64) - lo
        inside = (positions >= 0) & (positions < self.size)
        if not missing_ok and not inside.all():
            raise KeyError(f"agents {agent_ids[~inside][:3].tolist()} are not in this shard")
        return positions[inside]


_ABSENT = object()
#: a memory's empty inbox in its JSON text: where a column inbox goes (a key, never in a string,
#: whose quotes JSON escapes)
_NO_INBOX = '"inbox": []'


def emission_rows(close: StepClose, ids: np.ndarray, persona_ids: pa.Array | pa.ChunkedArray,
                  pools: np.ndarray, content: pa.Array | None = None,
                  targets: pa.Array | None = None) -> pa.Table:
    """Return the emission rows of agents ``ids`` saying their pools' texts.

    Args:
        pools: each agent's index into ``close.pools``.
        content, targets: each row's content and addressee persona id (None: the pool's content,
            no addressee).
    """
    ids = np.asarray(ids, dtype=np.int32)
    first = np.array([p.first for p in close.pools], dtype=np.int32)[pools]
    is_first = ids == first
    flags = [p.first_flag for p in close.pools]
    first_ids = [f"{close.run_id}:{close.step}:{p.first}" for p in close.pools]
    later = pa.array([flags[i] or first_ids[i] for i in range(len(flags))], pa.string())
    at_first = pa.array(flags, pa.string())
    duplicate_of = pc.if_else(pa.array(is_first), at_first.take(pools), later.take(pools))
    take = pa.array(pools)
    n = ids.size
    return pa.table({
        "emission_id": emission_rows_ids(close, ids),
        "run_id": pa.repeat(pa.scalar(close.run_id, pa.string()), n),
        "step": pa.repeat(pa.scalar(close.step, pa.int32()), n),
        "agent_id": pa.array(ids),
        "persona_id": persona_ids,
        "task": pa.array([p.kind for p in close.pools], pa.string()).take(take),
        "content": (pa.array([p.content for p in close.pools], pa.string()).take(take)
                    if content is None else content),
        "text": pa.array([p.text for p in close.pools], pa.string()).take(take),
        "target_persona_id": pa.nulls(n, pa.string()) if targets is None else targets,
        "model": pa.repeat(pa.scalar(close.model, pa.string()), n),
        "is_duplicate": pc.is_valid(duplicate_of),
        "duplicate_of": duplicate_of,
        "archetype": pa.array([p.archetype for p in close.pools], pa.int32()).take(take),
    })


def emission_rows_ids(close: StepClose, ids: np.ndarray) -> pa.Array:
    """Return the emission ids of agents ``ids`` at the closed step."""
    return _ids(f"{close.run_id}:{close.step}:", np.asarray(ids, dtype=np.int32))


def _ids(prefix: str, agent_ids: np.ndarray) -> pa.Array:
    """Return prefix + agent id for every agent id, as strings."""
    return pc.binary_join_element_wise(pa.scalar(prefix, pa.string()),
                                       pc.cast(pa.array(agent_ids), pa.string()), "")


def _keys(seed: int, persona_ids: pa.Array) -> np.ndarray:
    """Return each persona's draw key, reading the ids a slice at a time."""
    keys = np.empty(len(persona_ids), dtype=np.uint64)
    for lo in range(0, len(persona_ids), ROWS_A_PART):
        part = persona_ids.slice(lo, ROWS_A_PART).to_pylist()
        keys[lo:lo + len(part)] = activation_keys(seed, part)
    return keys


def write_parts(path: Path, tables: Iterator[pa.Table | None]) -> str | None:
    """Write tables of one schema as one Parquet file, a row group or more each, complete or not
    at all (a temporary name, then a rename); returns its path, or None when no table had a row.

    Only one table is held at a time, so the rows of a large shard are never all in memory.
    """
    import pyarrow.parquet as pq

    part = path.with_name(path.name + PART)
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if table is None or not table.num_rows:
                continue
            if writer is None:
                writer = pq.ParquetWriter(part, table.schema)
            writer.write_table(table)
    except BaseException:
        if writer is not None:
            writer.close()
            part.unlink(missing_ok=True)
        raise
    if writer is None:
        return None
    writer.close()
    os.replace(part, path)
    return str(path)
