"""A column shard's inboxes (sim/inbox_columns.py) and message rows (sim/message_rows.py) against
``AgentMemory``'s own inbox, which they replace: the same messages kept, in the same order, the
same ones pushed out, the same JSON."""

import json
import random

import numpy as np
import pyarrow as pa

from personahub.sim.inbox_columns import FIELDS, InboxColumns
from personahub.sim.memory import AgentMemory, Message
from personahub.sim.message_rows import addressed_rows, json_strings
from personahub.sim.population_plan import PoolAnswer


def _messages(start: int, n: int, step: int) -> list[Message]:
    texts = ['plain', 'a "quoted" word', 'two\nlines', 'back\\slash', 'café ☕']
    return [Message(message_id=f"r:{step}:{start + i}:m", step=step, sender_id=f"p{start + i}",
                    receiver_id="q", text=texts[(start + i) % len(texts)],
                    reply_to=None if i % 2 else f"r:{step - 1}:{i}:m",
                    emission_id=f"r:{step}:{start + i}",
                    thread_id=None if i % 3 else f"r:1:{i}:m")
            for i in range(n)]


def _table(messages: list[Message]) -> pa.Table:
    return pa.table({name: pa.array([getattr(m, name) for m in messages],
                                    pa.int32() if name == "step" else pa.string())
                     for name in FIELDS})


def _oracle(capacity: int) -> AgentMemory:
    return AgentMemory(observations=3, messages=capacity, own=2, summary_terms=0)


def test_inboxes_keep_push_out_and_write_what_agent_memory_does():
    """Fails with a ring that evicts the newest, keeps more than its capacity, or loses the order
    of several messages to one agent in one step."""
    rng = random.Random(3)
    n, capacity = 6, 3
    inbox = InboxColumns(n, capacity)
    oracles = [_oracle(capacity) for _ in range(n)]
    pushed_out: list[list[str]] = [[] for _ in range(n)]
    expected_out: list[list[str]] = [[] for _ in range(n)]
    sent = 0
    for step in range(1, 6):
        messages = _messages(sent, rng.randint(1, 12), step)
        sent += len(messages)
        receivers = np.array([rng.randrange(n) for _ in messages])
        for m, r in zip(messages, receivers.tolist(), strict=True):
            held = oracles[r].inbox
            if len(held) == held.maxlen:
                expected_out[r].append(held[0].message_id)
            oracles[r].receive(m)
        kept = inbox.add(_table(messages), np.array([int(m.emission_id.rsplit(":", 1)[1])
                                                      for m in messages]))
        for where, out in inbox.push(receivers, kept):
            assert np.unique(where).size == where.size  # an agent at most once a round
            for position, message in zip(where.tolist(), out.tolist(), strict=True):
                if message >= 0:
                    pushed_out[position].append(inbox.message_ids[message].as_py())
        inbox.compact()
    assert pushed_out == expected_out
    got = inbox.inbox_json(np.arange(n)).to_pylist()
    for position, oracle in enumerate(oracles):
        state = json.dumps(oracle.to_state(), ensure_ascii=False)
        assert f'"inbox": {got[position]}' in state
        assert inbox.held[position] == len(oracle.inbox) <= capacity


def test_the_newest_message_is_the_one_a_reply_answers():
    """Fails when a reply would answer an older message than the newest, or its thread is lost."""
    inbox = InboxColumns(3, 2)
    messages = _messages(10, 4, 2)
    kept = inbox.add(_table(messages), np.array([10, 11, 12, 13]))
    list(inbox.push(np.array([0, 0, 0, 1]), kept))
    sender, ids, threads = inbox.newest(np.array([0, 1, 2]))
    assert sender.tolist() == [12, 13, -1]
    assert ids.to_pylist() == [messages[2].message_id, messages[3].message_id, None]
    assert threads.to_pylist() == [messages[2].thread_id or messages[2].message_id,
                                   messages[3].thread_id or messages[3].message_id, None]
    inbox.clear(np.array([0]))
    assert inbox.newest(np.array([0]))[0].tolist() == [-1]


def test_a_checkpointed_inbox_comes_back_as_it_was_written():
    oracle = _oracle(2)
    for m in _messages(0, 3, 4):
        oracle.receive(m)
    state = oracle.to_state()
    inbox = InboxColumns(2, 2)
    inbox.restore(1, json.loads(json.dumps(state))["inbox"])
    assert inbox.inbox_json(np.array([0, 1])).to_pylist() == [
        "[]", json.dumps(state["inbox"], ensure_ascii=False)]
    assert inbox.newest(np.array([1]))[0].tolist() == [2]


def test_json_strings_escape_as_json_dumps():
    values = ["plain", 'say "hi"', "tab\there", None, "ünï"]
    assert json_strings(pa.array(values)).to_pylist() == [
        "null" if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    assert json_strings(pa.array(["a", None])).to_pylist() == ['"a"', "null"]


def test_message_rows_fill_in_each_sender_and_receiver_as_the_task_does():
    """The conversation pool filled in by Arrow equals the task's own per-message filling."""
    from personahub.tasks import emission_task

    content = {"turns": [{"speaker": "x", "line": "Hello there"},
                         {"speaker": "y", "line": 'Fine, "thanks"'},
                         {"speaker": "x", "line": "Bye"}]}
    pools = [PoolAnswer(archetype=0, kind="conversation", content=json.dumps(content),
                        text="Hello there", error=None, first=1, first_flag=None)]
    speakers = pa.array(["p1", 'p"2', "p3"])
    listeners = pa.array(["q1", "q2", "q\n3"])
    stored, heard = addressed_rows(pools, np.zeros(3, dtype=np.int64), speakers, listeners)
    task = emission_task("conversation")
    for i in range(3):
        want, said = task.addressed_content(content, "Hello there", speakers[i].as_py(),
                                            listeners[i].as_py())
        assert stored[i].as_py() == json.dumps(want, ensure_ascii=False)
        assert heard[i].as_py() == said == "Hello there / Bye"


def test_message_rows_parse_a_pools_content_once(monkeypatch):
    """Each pool's JSON content is parsed once, whether Arrow fills its messages in or the
    task does a message at a time (a NUL in the heard text), and the rows are the task's."""
    from personahub.tasks import emission_task

    parsed: list[str] = []
    loads = json.loads

    def counted(text: str) -> object:
        parsed.append(text)
        return loads(text)

    task = emission_task("conversation")
    speakers, listeners = pa.array(["p1", "p2", "p3"]), pa.array(["q1", "q2", "q3"])
    for line in ("Hello there", "Hello\x00there"):
        content = {"turns": [{"speaker": "x", "line": line}, {"speaker": "y", "line": "Fine"}]}
        pools = [PoolAnswer(archetype=0, kind="conversation", content=json.dumps(content),
                            text=line, error=None, first=1, first_flag=None)]
        parsed.clear()
        monkeypatch.setattr(json, "loads", counted)
        stored, heard = addressed_rows(pools, np.zeros(3, dtype=np.int64), speakers, listeners)
        monkeypatch.setattr(json, "loads", loads)
        assert len(parsed) == 1
        for i in range(3):
            want, said = task.addressed_content(content, line, f"p{i + 1}", f"q{i + 1}")
            assert stored[i].as_py() == json.dumps(want, ensure_ascii=False)
            assert heard[i].as_py() == said
