"""``personahub doctor`` against the loopback server in each dialect, and against endpoints that
cannot serve a job (every request refused, nothing listening, the offline engine)."""

from __future__ import annotations

import json

import pytest

from personahub.models.doctor import CacheResult, LoadLevel, _cache_numbers, recommend
from tests.cli_helpers import invoke, one_line_error

QUICK = ("--budget", "3", "--max-concurrency", "4", "--timeout", "20")
# what each dialect's modes come to (personahub/models/fake_server/dialects.py): accepted, or
# refused with its error
EXPECTED = {
    "openai": {"json_schema": "accepted", "tools": "accepted", "prompt": "accepted"},
    "vllm": {"json_schema": "accepted", "json_object": "invalid", "tools": "accepted",
             "prompt": "accepted"},
    "llama-cpp-python": {"json_schema": "refused", "json_object": "accepted", "tools": "accepted",
                         "prompt": "accepted"},
    "ollama": {"json_schema": "accepted", "tools": "accepted", "prompt": "accepted"},
    "openai-strict": {"json_schema": "accepted", "tools": "accepted", "prompt": "accepted"},
    "vllm-legacy": {"json_schema": "accepted", "tools": "accepted", "prompt": "accepted"},
    "tools-only": {"json_schema": "refused", "json_object": "refused", "tools": "accepted",
                   "prompt": "accepted"},
}


@pytest.mark.parametrize("dialect", sorted(EXPECTED))
@pytest.mark.slow
def test_doctor_prints_its_table_for_every_dialect(server, dialect) -> None:
    srv = server(dialect=dialect)
    result = invoke("doctor", "--llm", f"{srv.base_url}?model=offline", *QUICK)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "structured modes at offline@http://127.0.0.1" in text
    assert "runaway probe" in text and "closes" in text
    assert "load (" in text
    # the loopback server reports cached prompt tokens in the dialects whose servers do
    if dialect in ("openai", "openai-strict", "vllm", "vllm-legacy", "tools-only"):
        assert "prefix cache: " in text and "prompt tokens" in text and "not reported" not in text
    else:
        assert "prefix cache: not reported" in text
    assert "recommended: --concurrency " in text
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in text.splitlines() if line.startswith("│") and "_" in line.split("│")[1]
            or line.startswith("│ tools") or line.startswith("│ prompt")}
    for mode, verdict in EXPECTED[dialect].items():
        assert rows[mode] == verdict, (mode, rows)


@pytest.mark.slow
def test_doctor_on_strict_openai_prints_no_langchain_advice(server) -> None:
    """The strict dialect refuses maxLength; langchain-openai then warns to use its
    ``with_structured_output``, advice for other code: the seam strips the keyword itself, and
    the console shows the table only (a real process: pytest would catch the warning)."""
    import os
    import subprocess
    import sys

    srv = server(dialect="openai-strict")
    done = subprocess.run([sys.executable, "-m", "personahub", "doctor", "--llm",
                           f"{srv.base_url}?model=offline", *QUICK], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    assert "structured modes at" in done.stdout
    assert "Warning" not in done.stderr and "with_structured_output" not in done.stderr, done.stderr


def test_doctor_json_names_the_mode_and_concurrency_to_use(server) -> None:
    srv = server(dialect="llama-cpp-python", latency_s=0.02)
    result = invoke("doctor", "--llm", f"{srv.base_url}?model=offline", "--json", *QUICK)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["best_mode"] == "json_object"  # json_schema is a 500 there
    assert report["problem"] is None and report["runaway"]["closed"] is True
    levels = report["levels"]
    assert [x["concurrency"] for x in levels][:2] == [1, 2]
    assert all(x["failed"] == 0 and x["answered"] == x["requests"] for x in levels)
    assert report["recommended"] in [x["concurrency"] for x in levels]
    assert report["cache"]["reported"] is False
    # the doctor's requests all reached the server: modes, runaway, load, cache
    assert srv.stats.requests >= 4 + 1 + sum(x["requests"] for x in levels) + 2


@pytest.mark.slow
def test_doctor_exits_1_with_one_line_when_every_request_is_refused(server) -> None:
    srv = server(error_rate=1.0, retry_after_s=0.0)
    result = invoke("doctor", "--llm", f"{srv.base_url}?model=offline", *QUICK)
    line = one_line_error(result)
    assert "cannot serve a job: it refuses every request (HTTP" in line
    # the modes table still shows what was tried and how it was refused; nothing is recommended
    refused = [row for row in result.stdout.splitlines() if "│ refused" in row]
    assert len(refused) == 4, result.stdout
    assert "recommended" not in result.stdout and "load (" not in result.stdout


def test_doctor_exits_1_when_the_answers_are_never_json(server) -> None:
    srv = server(malformed_rate=1.0, stubborn=True)  # repair prompts get broken JSON too
    line = one_line_error(invoke("doctor", "--llm", f"{srv.base_url}?model=offline", *QUICK))
    assert "cannot serve a job: no structured mode works (json_schema: invalid" in line


def test_doctor_exits_1_when_nothing_listens(server) -> None:
    srv = server()
    url = srv.base_url
    srv.stop()
    line = one_line_error(invoke("doctor", "--llm", url, *QUICK))
    assert "cannot serve a job: it is unreachable" in line


def test_doctor_without_a_server_to_probe_is_a_usage_error(monkeypatch) -> None:
    monkeypatch.delenv("PERSONAHUB_LLM", raising=False)
    result = invoke("doctor")
    assert result.exit_code == 2 and "--llm" in result.stderr
    assert invoke("doctor", "--llm", "offline").exit_code == 2
    assert invoke("doctor", "--llm", "http://127.0.0.1:9/v1", "--max-concurrency", "0").exit_code == 2


def test_doctor_never_prints_the_key(server) -> None:
    srv = server()
    secret = "sk-doctor-secret-123"
    for extra in ((), ("--json",)):
        result = invoke("doctor", "--llm", f"{srv.base_url}?model=offline&api_key={secret}",
                        *QUICK, *extra)
        assert result.exit_code == 0, result.output
        assert secret not in result.output and secret not in result.stderr


def test_cache_reuse_is_read_where_each_server_reports_it() -> None:
    openai_like = {"usage": {"prompt_tokens": 700, "prompt_tokens_details": {"cached_tokens": 640}}}
    assert _cache_numbers(openai_like) == CacheResult(
        True, 640, 700, "usage.prompt_tokens_details.cached_tokens")
    llama_server = {"usage": {"prompt_tokens": 700}, "timings": {"cache_n": 650, "prompt_n": 50}}
    found = _cache_numbers(llama_server)
    assert (found.cached_tokens, found.prompt_tokens, found.source) == (650, 700, "timings.cache_n")
    assert found.share == pytest.approx(650 / 700)
    assert _cache_numbers({"usage": {"prompt_tokens": 700}}) == CacheResult(False, None, 700)


def _level(concurrency: int, tokens_per_s: float, failed: int = 0) -> LoadLevel:
    return LoadLevel(concurrency, 8, 8 - failed, failed, 1.0, 100.0, int(tokens_per_s),
                     tokens_per_s, 8.0, "HTTP 429: slow down" if failed else None)


def test_the_recommendation_is_the_smallest_level_near_the_best() -> None:
    assert recommend([_level(1, 10), _level(2, 19), _level(4, 36), _level(8, 37)]) == 4
    assert recommend([_level(1, 10), _level(2, 19), _level(4, 60, failed=3)]) == 2  # 4 was refused
    assert recommend([_level(1, 10, failed=2)]) == 1  # flaky even alone: one at a time
    assert recommend([LoadLevel(1, 4, 0, 4, 1.0, 0.0, 0, 0.0, 0.0, "timeout")]) is None
