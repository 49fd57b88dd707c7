"""The failure policy's step/batch rule: endpoint failures stop fast, weak answers
stop a job only past --max-failed-share, and the kept share reads in plain words."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from personahub.analysis.kept import kept_line
from personahub.core.engine_options import ENGINE_OPTIONS
from personahub.core.errors import PersonahubError
from personahub.core.failures import DEFAULT_MAX_FAILED_SHARE, batch_failure, endpoint_error
from personahub.models.failures import plain_reason

CUT = "answer cut off at max_tokens (finish_reason=length)"


@dataclass
class R:
    status: str
    error: str | None


def quality(actions: int, failed: int, share: float = DEFAULT_MAX_FAILED_SHARE) -> str | None:
    records = [R("invalid", CUT)] * failed + [R("ok", None)] * (actions - failed)
    return batch_failure("step 1", actions, [CUT] * failed, records, share)


def test_quality_failures_stop_only_past_the_share() -> None:
    assert DEFAULT_MAX_FAILED_SHARE == 0.8
    assert quality(10, 8) is None  # 80% is not past 0.8
    reason = quality(10, 9)
    assert reason is not None and "9 of 10 actions failed in step 1" in reason
    assert "--max-failed-share 0.8" in reason and "max_tokens" in reason
    assert quality(10, 6, share=0.5) is not None and quality(10, 5, share=0.5) is None
    assert quality(5, 5) is not None  # five actions are enough to judge


def test_fewer_than_five_actions_never_stop_for_quality() -> None:
    assert quality(4, 4) is None
    assert quality(1, 1) is None
    assert quality(4, 4, share=0.1) is None


def test_endpoint_failures_stop_at_a_majority() -> None:
    http = "HTTP 500: boom"
    stop = batch_failure("batch 1", 4, [http] * 3, [R("error", http)] * 3)
    assert stop is not None and "failed at the endpoint" in stop and "--llm server" in stop
    assert batch_failure("batch 1", 4, [http] * 2, [R("error", http)] * 2) is None  # too few
    # endpoint failures under a job's "what: " prefix count too; quality ones do not
    errors = ["survey s1: timeout", "reflection: connection error: refused", "HTTP 503: busy", CUT]
    assert batch_failure("step 2", 5, errors, []) is not None  # 3 of 5 at the endpoint
    assert batch_failure("step 2", 5, [CUT] * 3 + ["timeout"], []) is None  # 4 of 5, one endpoint


def test_endpoint_errors_are_told_from_weak_answers() -> None:
    for error in ("HTTP 429: slow down", "timeout", "survey q1: connection error: reset"):
        assert endpoint_error(error), error
    for error in (CUT, "rejected: too_short: the instruction is short", "text: Field required",
                  "quality gate: few_letters: x", None, ""):
        assert not endpoint_error(error), error


def test_reasons_in_plain_words() -> None:
    assert plain_reason(CUT) == "cut off at max_tokens"
    assert plain_reason("rejected: too_short: the text is short") == "rejected by the gate (too_short)"
    assert plain_reason("quality gate: email: looks like an address") == "rejected by the gate (email)"
    assert plain_reason("HTTP 503: busy") == "endpoint error (HTTP 503)"
    assert plain_reason("timeout") == "timed out"
    assert plain_reason("no JSON object in the answer (x)") == "no JSON in the answer"
    assert plain_reason("text: Field required") == "invalid JSON for the schema"


def test_kept_line_reads_as_the_issue_asks() -> None:
    line = kept_line("instruction", 20, 18, {"cut off at max_tokens": 1,
                                             "rejected by the gate (too_short)": 1})
    assert line == ("instruction: 18 of 20 calls kept (90%); 2 failed: cut off at max_tokens ×1, "
                    "rejected by the gate (too_short) ×1")
    assert kept_line("survey", 3, 3, {}) == "survey: 3 of 3 calls kept (100%)"


@pytest.mark.parametrize("value", [0, -0.1, 1.5, float("nan")])
def test_max_failed_share_is_checked(value: float) -> None:
    check = ENGINE_OPTIONS["max_failed_share"].check
    with pytest.raises(PersonahubError, match="--max-failed-share"):
        check(value)
    assert check(1) == 1 and check(0.05) == 0.05


def test_the_offline_engine_answers_a_fresh_sample_deterministically() -> None:
    from personahub.models.offline import EngineRequest, OfflineEngine

    request = EngineRequest({"type": "object", "properties": {"text": {"type": "string"}},
                             "required": ["text"]})
    messages = [{"role": "user", "content": "## Persona\nA ferry pilot.\n## Task\nSay a line."}]
    engine = OfflineEngine(5)
    first, again = engine.answer(messages, request), engine.answer(messages, request, 0)
    fresh, fresh_again = engine.answer(messages, request, 1), OfflineEngine(5).answer(messages, request, 1)
    assert first == again  # sample 0 is the answer it always was
    assert fresh == fresh_again and fresh.content != first.content
