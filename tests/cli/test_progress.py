"""Progress of model-calling work: plain lines without a terminal, with calls, tokens, failures."""

from __future__ import annotations

import io

from rich.console import Console

from personahub.cli.progress import JobProgress, LateCounts, calls_text
from personahub.models.client import CallRecord, CallStats


def test_plain_progress_line_has_counts_tokens_failures() -> None:
    stats = CallStats()
    stats.add([CallRecord(purpose="t", model="m", attempt=1, status="ok", latency_ms=1.0,
                          tokens_in=120, tokens_out=30)])
    stats.add([CallRecord(purpose="t", model="m", attempt=1, status="error", latency_ms=1.0,
                          error="HTTP 503"),
               CallRecord(purpose="t", model="m", attempt=2, status="invalid", latency_ms=1.0)])
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=False, width=200)
    with JobProgress(console, stats, every_s=3600) as bar:
        task = bar.add_task("synthesizing math_problem", total=10)
        bar.update(task, completed=4)
    text = sink.getvalue()
    assert "progress: synthesizing math_problem 4/10" in text
    assert "3 calls" in text and "120 tokens in, 30 out" in text and "1 failed" in text


def test_no_lines_when_told_not_to() -> None:
    sink = io.StringIO()
    with JobProgress(Console(file=sink, force_terminal=False), None, every_s=0) as bar:
        bar.add_task("x", total=2)
    assert sink.getvalue() == ""


def test_late_counts_are_zero_until_followed_then_the_clients() -> None:
    late = LateCounts()
    assert calls_text(late) == "0 calls (0.0/s), 0 tokens in, 0 out, 0 failed"
    stats = CallStats()
    stats.add([CallRecord(purpose="t", model="m", attempt=1, status="ok", latency_ms=1.0,
                          tokens_in=7, tokens_out=3),
               CallRecord(purpose="t", model="m", attempt=2, status="error", latency_ms=1.0)])
    late.follow(stats)
    assert (late.attempts, late.ok, late.failed, late.tokens_in, late.tokens_out) == (
        stats.attempts, stats.ok, stats.failed, 7, 3)
    assert late.attempts == 2 and late.failed == 1
