"""Synthesis jobs: every task x prompting mode offline, loopback faults, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from pydantic import BaseModel

from personahub.api import run_synthesis
from personahub.core.errors import PersonahubError
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.fake_server.server import running_server
from personahub.pipelines import synthesize
from personahub.pipelines.prompts.synthesis import PROMPTING_MODES
from personahub.pipelines.synthesis_inputs import load_examples
from personahub.pipelines.synthesize import SynthConfig
from personahub.tasks import synthesis_names, synthesis_task
from personahub.tasks.multi_turn import Conversation
from personahub.tasks.synthesis_schemas import SYNTH_SCHEMAS, Solution, schema_for
from personahub.tasks.tool_spec import ToolSpec, tool_to_openai_function
from tests.fakes import Call, FakeClient
from tests.official_sample import sample_rows
from tests.synth_helpers import write_examples


def items(db: Path, job_id: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT persona_id, task, prompting, content, text, solution, "
                           "is_duplicate, duplicate_of FROM synth_items WHERE job_id = ? "
                           "ORDER BY item_id", [job_id]).fetchall()
    finally:
        con.close()


def scalar(db: Path, sql: str, params: list | None = None):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()[0][0]
    finally:
        con.close()


@pytest.mark.parametrize("mode", PROMPTING_MODES)
@pytest.mark.parametrize("task", sorted(synthesis_names()))
@pytest.mark.slow
def test_every_task_and_mode_offline(tmp_path: Path, task: str, mode: str) -> None:
    db = tmp_path / "s.duckdb"
    examples = write_examples(tmp_path / "ex.jsonl") if mode != "zero-shot" else None
    summary = run_synthesis(SynthConfig(task=task, n=4, prompting=mode, db=str(db),
                                         examples=str(examples) if examples else None))
    assert summary.written == 4 and summary.failed == 0
    rows = items(db, summary.job_id)
    assert len(rows) == 4 and len({r[0] for r in rows}) == 4
    schema = SYNTH_SCHEMAS[task]
    for _, row_task, prompting, content, text, solution, _, _ in rows:
        assert (row_task, prompting) == (task, mode)
        schema.model_validate(json.loads(content))
        assert text.strip() and solution is None
    calls = scalar(db, "SELECT count(*) FROM llm_calls WHERE job_id = ? AND status = 'ok'",
                   [summary.job_id])
    # one call per item, plus one text-to-persona call for the example without a persona
    assert calls == 4 + (mode == "persona-few-shot")
    status = scalar(db, "SELECT status FROM synth_jobs "
                        "JOIN jobs USING (job_id) WHERE job_id = ?", [summary.job_id])
    assert status == "finished"


@pytest.fixture(scope="module")
def loopback_url():
    with running_server(seed=3) as server:
        yield server.base_url + "?model=offline"


# every mode of every task runs offline above; over HTTP the fast subset keeps zero-shot of the
# tool and instruction tasks (a JSON-valued and a text-valued schema), the full suite all of them
@pytest.mark.parametrize(("task", "mode"), [
    pytest.param(task, mode, id=f"{task}-{mode}",
                 marks=() if mode == "zero-shot" and task in ("tool_spec", "instruction")
                 else pytest.mark.slow)
    for task in sorted(synthesis_names()) for mode in PROMPTING_MODES])
def test_every_task_and_mode_over_http(tmp_path: Path, loopback_url: str, task: str,
                                       mode: str) -> None:
    """The same matrix through ChatOpenAI against the loopback OpenAI-compatible server."""
    db = tmp_path / "h.duckdb"
    examples = write_examples(tmp_path / "ex.jsonl") if mode != "zero-shot" else None
    summary = run_synthesis(SynthConfig(task=task, n=2, prompting=mode, db=str(db),
                                         llm=loopback_url, solve=task in ("math_problem",),
                                         examples=str(examples) if examples else None))
    assert summary.written == 2 and summary.failed == 0 and not summary.offline
    for _, row_task, prompting, content, text, solution, _, _ in items(db, summary.job_id):
        assert (row_task, prompting) == (task, mode)
        SYNTH_SCHEMAS[task].model_validate(json.loads(content))
        assert text.strip()
        if task == "math_problem":
            Solution.model_validate(json.loads(solution))
    models = _col(db, "SELECT DISTINCT llm FROM llm_calls")
    assert models == ["offline@http://127.0.0.1:" + loopback_url.split(":")[2].split("/")[0] + "/v1"]


def test_persona_few_shot_infers_missing_personas(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    examples = write_examples(tmp_path / "ex.jsonl", with_personas=False)
    summary = run_synthesis(SynthConfig(task="instruction", n=2, prompting="persona-few-shot",
                                         examples=str(examples), db=str(db)))
    config = json.loads(scalar(db, "SELECT config FROM synth_jobs JOIN jobs USING (job_id) WHERE job_id = ?",
                               [summary.job_id]))
    assert all(d["persona"] for d in config["demos"]) and len(config["demos"]) == 2
    assert scalar(db, "SELECT count(*) FROM llm_calls WHERE purpose = 'text_to_persona'") == 2


def test_persona_hub_rows_are_persona_enhanced_demonstrations(tmp_path: Path) -> None:
    """A few rows of the released tool sample serve as --examples as they are: persona and text
    pair up, the tool's JSON-in-a-string loses its outer layer, and no persona is inferred."""
    rows = sample_rows(3)
    examples = tmp_path / "official.jsonl"
    examples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    demos = load_examples(examples)
    assert [d.persona for d in demos] == [r["input persona"] for r in rows]
    assert [json.loads(d.text) for d in demos] == [json.loads(json.loads(r["synthesized text"]))
                                                   for r in rows]
    db = tmp_path / "s.duckdb"
    summary = run_synthesis(SynthConfig(task="tool_spec", n=2, prompting="persona-few-shot",
                                         examples=str(examples), db=str(db)))
    assert summary.written == 2 and summary.failed == 0
    assert scalar(db, "SELECT count(*) FROM llm_calls WHERE purpose = 'text_to_persona'") == 0
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"input persona": "A nurse", "synthesized text": "Triage.",
                                 "description": "instruction"}) + "\n", encoding="utf-8")
    assert load_examples(plain)[0].text == "Triage."


def test_prompt_modes_differ_and_pair_personas() -> None:
    from personahub.pipelines.prompts.synthesis import synthesis_messages

    demos = [("Example problem text", "A chemist")]
    zero = synthesis_messages("math_problem", "A nurse")[1].content
    few = synthesis_messages("math_problem", "A nurse", mode="few-shot", examples=demos)[1].content
    pfs = synthesis_messages("math_problem", "A nurse", mode="persona-few-shot",
                             examples=demos)[1].content
    assert "Example problem text" not in zero
    assert "Example problem text" in few and "A chemist" not in few
    assert "Example persona: A chemist" in pfs


def test_solve_and_multi_turn_with_assistant(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    solved = run_synthesis(SynthConfig(task="reasoning_problem", n=3, solve=True, db=str(db)))
    assert solved.solved == 3
    for row in items(db, solved.job_id):
        Solution.model_validate(json.loads(row[5]))
    chat = run_synthesis(SynthConfig(task="multi_turn", n=3, with_assistant=True, db=str(db)))
    for row in items(db, chat.job_id):
        content = json.loads(row[3])
        Conversation.model_validate(content)
        roles = [m["role"] for m in synthesis_task("multi_turn").chat_messages(content)]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) >= 4


def test_tool_shape_and_openai_function() -> None:
    tool = ToolSpec.model_validate({
        "name": "Ferry Times", "description": "Looks up ferry departure times.",
        "function_name": "get_ferry_times",
        "input_args": [{"name": "stop", "type": "string", "description": "the ferry stop"},
                       {"name": "date", "type": "string", "description": "the day, ISO"}],
        "return": {"type": "array", "description": "list of times"}, "depend": ["transit API"]})
    fn = tool_to_openai_function(tool)
    assert fn["type"] == "function" and fn["function"]["name"] == "get_ferry_times"
    assert list(fn["function"]["parameters"]["properties"]) == ["stop", "date"]
    assert fn["function"]["parameters"]["required"] == ["stop", "date"]
    with pytest.raises(ValueError):
        ToolSpec.model_validate({**tool.model_dump(by_alias=True), "function_name": "rm -rf"})
    assert schema_for("multi_turn", with_assistant=True) is Conversation


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_loopback_server_with_faults(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with running_server(error_rate=0.25, malformed_rate=0.25) as server:
        spec = server.base_url + "?model=offline&api_key=sekrit-value"
        client = LLMClient(LLMSettings(spec=spec, backoff_s=0.001, max_retries=6,
                                       concurrency=4, timeout_s=10))
        jobs = []
        for task, solve in (("tool_spec", False), ("math_problem", True), ("npc", False)):
            summary = run_synthesis(SynthConfig(task=task, n=6, solve=solve, db=str(db),
                                                 llm=spec, batch_size=4), client=client)
            assert summary.written + summary.failed == 6
            jobs.append((task, summary.job_id))
    for task, job_id in jobs:  # failed personas are retried by a resume (here: offline)
        resumed = run_synthesis(SynthConfig(task=task, db=str(db)), resume=job_id)
        assert resumed.failed == 0
        rows = items(db, job_id)
        assert len(rows) == 6 and len({r[0] for r in rows}) == 6
        for row in rows:
            SYNTH_SCHEMAS[task].model_validate(json.loads(row[3]))
    statuses = {r for r in _col(db, "SELECT DISTINCT status FROM llm_calls")}
    assert "ok" in statuses and statuses & {"error", "invalid"}
    dump = "\n".join(str(r) for r in _col(db, "SELECT config::VARCHAR || llm FROM synth_jobs "
                                              "JOIN jobs USING (job_id)"))
    dump += "\n".join(str(r) for r in _col(db, "SELECT coalesce(error, '') || llm "
                                               "FROM llm_calls"))
    assert "sekrit" not in dump


def _col(db: Path, sql: str) -> list:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute(sql).fetchall()]
    finally:
        con.close()


def test_resume_skips_done_personas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "s.duckdb"
    real = synthesize.SynthesisSpec.commit
    calls = {"n": 0}

    def flaky(self, ctx, batch, result):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(self, ctx, batch, result)

    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", flaky)
    with pytest.raises(PersonahubError, match="--resume"):
        run_synthesis(SynthConfig(task="instruction", n=7, batch_size=3, db=str(db)))
    job_id = _col(db, "SELECT job_id FROM synth_jobs")[0]
    assert _col(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)") == ["failed"]
    assert len(items(db, job_id)) == 3  # the first batch committed, the second rolled back
    monkeypatch.setattr(synthesize.SynthesisSpec, "commit", real)
    resumed = run_synthesis(SynthConfig(task="instruction", db=str(db)), resume=job_id)
    assert resumed.job_id == job_id and resumed.skipped_done == 3 and resumed.written == 4
    rows = items(db, job_id)
    assert len(rows) == 7 and len({r[0] for r in rows}) == 7
    assert _col(db, "SELECT status FROM synth_jobs JOIN jobs USING (job_id)") == ["finished"]
    again = run_synthesis(SynthConfig(task="instruction", db=str(db)), resume=job_id)
    assert again.written == 0 and again.skipped_done == 7


def same_instruction(call: Call) -> BaseModel:
    """Every persona gets the same instruction."""
    return call.schema(instruction="Plan my week of ferry crossings please")


def test_near_duplicates_flagged_within_job(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    summary = run_synthesis(SynthConfig(task="instruction", n=3, db=str(db)),
                            client=FakeClient(same_instruction, name="same-answer", offline=True))
    rows = items(db, summary.job_id)
    originals = [r for r in rows if not r[6]]
    assert summary.duplicates == 2 and len(originals) == 1
    assert all(r[7] for r in rows if r[6])
    dup_of = {r[7] for r in rows if r[6]}
    first = _col(db, "SELECT item_id FROM synth_items WHERE NOT is_duplicate")
    assert dup_of == set(first)


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine example"}\n{not json\n', encoding="utf-8")
    with pytest.raises(PersonahubError, match=r"bad.jsonl:2: not valid JSON"):
        load_examples(bad)
    bad.write_text('{"text": "ok"}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(PersonahubError, match=r"bad.jsonl:2: expected an object"):
        load_examples(bad)
    with pytest.raises(PersonahubError, match="--examples builtin:poem: no shipped"):
        load_examples("builtin:poem")
    with pytest.raises(PersonahubError, match="--prompting"):
        SynthConfig(task="instruction", prompting="two-shot")
    with pytest.raises(PersonahubError, match="task 'poem'"):
        SynthConfig(task="poem")
    with pytest.raises(PersonahubError, match="--solve"):
        SynthConfig(task="tool_spec", solve=True)
    with pytest.raises(PersonahubError, match="--personas"):
        run_synthesis(SynthConfig(task="tool_spec", n=2, db=db, where="no_such_column = 1"))
    with pytest.raises(PersonahubError, match="no personas match"):
        run_synthesis(SynthConfig(task="tool_spec", n=2, db=db, where="text = 'nobody'"))
    with pytest.raises(PersonahubError, match="--world"):
        run_synthesis(SynthConfig(task="npc", n=1, db=db, world=str(tmp_path / "none.md")))
    with pytest.raises(PersonahubError, match="--resume nope"):
        run_synthesis(SynthConfig(task="tool_spec", db=db), resume="nope")


def test_personas_filter_selects_subset(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    run_synthesis(SynthConfig(task="tool_spec", n=1, db=str(db)))  # seeds the hub
    wanted = _col(db, "SELECT count(*) FROM personas WHERE text ILIKE '%a%' AND seq % 2 = 0")[0]
    summary = run_synthesis(SynthConfig(task="instruction", n=1000, db=str(db),
                                         where="text ILIKE '%a%' AND seq % 2 = 0"))
    assert summary.written == wanted > 0
