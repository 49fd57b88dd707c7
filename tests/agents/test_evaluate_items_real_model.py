"""``personahub evaluate --items`` against a real model: 200 questions with reference answers
scored on SmolLM2-135M-Instruct, served on loopback by llama.cpp's own server (a compiled
``llama-server``, else xllamacpp's prebuilt one), or llama-cpp-python's where neither is here.

Marked ``real_model``; skips with the reason when no server or no GGUF is installed, and fails
instead when CI sets ``PERSONAHUB_REQUIRE_REAL_MODEL`` (which asks for llama.cpp's server), as
``tests/agents/test_real_model.py`` does. The tiny model scores low: what must hold is that the
job runs to its end with nothing but the URL, says its progress, and that its printed score is
the count of its stored answers equal to their references, every call accounted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from personahub.models import llamacpp
from personahub.tasks.answer_equivalence import equivalent
from tests.cli_helpers import invoke
from tests.optional import need_llama_cpp
from tests.pipeline_helpers import rows

pytestmark = pytest.mark.real_model

N = 200


@pytest.fixture(scope="module")
def served() -> Iterator[llamacpp.LlamaServer]:
    """The first real server that can start here, for the module's test."""
    if llamacpp.missing_llama_cpp() and not llamacpp.missing_extra():
        with llamacpp.local_llama_server() as server:
            yield server
        return
    need_llama_cpp()
    with llamacpp.local_llama_cpp() as server:
        yield server


def questions(path: Path) -> Path:
    """N made-up word problems in GSM8K's shape (reasoning, then "#### N")."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(N):
            a, b = i % 9 + 2, i % 7 + 1
            f.write(json.dumps({"question": f"Sam has {a} bags with {b} apples in each bag. How "
                                            "many apples does Sam have?",
                                "answer": f"{a} * {b} = {a * b}\n#### {a * b}"}) + "\n")
    return path


def test_200_questions_scored_on_smollm2(served: llamacpp.LlamaServer, tmp_path: Path) -> None:
    db = tmp_path / "items.duckdb"
    result = invoke("evaluate", "--items", questions(tmp_path / "q.jsonl"), "--model",
                    served.spec + "#answer", "--db", db, "--concurrency", 2, "--timeout", 120)
    assert result.exit_code == 0, result.output
    assert f": {N} items, test {N}, train 0" in result.stdout
    assert f"verified: {N} of {N} test items (100.0%): {N} by their reference answer" \
        in result.stdout
    assert f"progress: evaluating {N}/{N}" in result.stderr
    answers = dict(rows(db, "SELECT item_id, answer FROM eval_answers WHERE role = 'model'"))
    refs = dict(rows(db, "SELECT item_id, reference FROM eval_items"))
    right = sum(item in answers and equivalent(answers[item], ref) is True
                for item, ref in refs.items())
    score = re.search(r"score \S+: (\d+)/(\d+) = ", result.stdout)
    assert score is not None and (int(score[1]), int(score[2])) == (right, N)
    calls = rows(db, "SELECT status, error, max_tokens FROM llm_calls "
                     "WHERE job_kind = 'evaluation'")
    assert all(c[2] and c[2] > 0 for c in calls)  # every request carried max_tokens
    assert all(c[1] for c in calls if c[0] != "ok")  # every failure says why
    ok = sum(c[0] == "ok" for c in calls)
    assert ok == len(answers)  # each ok call wrote one answer
