"""Progress of long model-calling work: a live bar on a terminal, a plain line every few seconds
otherwise (logs, CI, pipes), both with calls/s, tokens, failures and ETA; nothing on a quiet
console (-q), and a line per update, i.e. per batch or step, when asked (-v)."""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

LINE_EVERY_S = 5.0


class CallCounts(Protocol):
    """What a model client counts (models.CallStats)."""

    attempts: int
    ok: int
    failed: int
    tokens_in: int
    tokens_out: int

    def rate(self) -> float: ...


def _followed(count: str) -> object:
    """Return a read-only LateCounts property: the followed client's count, 0 before it is
    followed (one definition for the five counts CallCounts names)."""
    return property(lambda self: getattr(self._stats, count) if self._stats else 0)


class LateCounts:
    """Call counts of a client the job kernel builds later (once the job's inputs are
    checked): zero until follow() names the client's counts."""

    def __init__(self) -> None:
        self._stats: CallCounts | None = None
        self._rate: float | None = None  # the rate when the calls ended (freeze)

    def follow(self, stats: CallCounts) -> None:
        """Show the counts of `stats` from now on."""
        self._stats = stats

    attempts = _followed("attempts")
    ok = _followed("ok")
    failed = _followed("failed")
    tokens_in = _followed("tokens_in")
    tokens_out = _followed("tokens_out")

    def rate(self) -> float:
        if self._rate is not None:
            return self._rate
        return self._stats.rate() if self._stats else 0.0

    def freeze(self) -> None:
        """Keep the calls' rate as it is now: the job's calls are over, and what follows
        (scoring, writing) would make it seem to fall."""
        if self._rate is None:
            self._rate = self.rate()


def calls_text(stats: CallCounts) -> str:
    """One short phrase: attempts, rate, tokens and failed calls so far."""
    return (f"{stats.attempts} calls ({stats.rate():.1f}/s), {stats.tokens_in:,} tokens in, "
            f"{stats.tokens_out:,} out, {stats.failed} failed")


def _eta(task: Task) -> str:
    remaining = task.time_remaining
    if remaining is None or task.total is None:
        return ""
    minutes, seconds = divmod(int(remaining), 60)
    return f", ETA {minutes}:{seconds:02d}"


class _CallsColumn(ProgressColumn):
    def __init__(self, stats: CallCounts) -> None:
        super().__init__()
        self.stats = stats

    def render(self, task: Task) -> Text:
        return Text(calls_text(self.stats), style="dim")


class JobProgress(Progress):
    """rich progress with model-call counts; without a terminal, a line every every_s."""

    def __init__(self, console: Console, stats: CallCounts | None = None, *,
                 every_s: float | None = None, every_update: bool = False) -> None:
        columns: list[str | ProgressColumn] = [TextColumn("{task.description}", markup=False), BarColumn(),
                                               MofNCompleteColumn(), TimeElapsedColumn(),
                                               TimeRemainingColumn()]
        if stats is not None:
            columns.append(_CallsColumn(stats))
        plain = not console.is_terminal and "PERSONAHUB_PROGRESS" not in os.environ
        super().__init__(*columns, console=console, transient=False,
                         disable=plain or console.quiet)
        self.stats = stats
        self.every_update = every_update and not console.quiet
        self.every_s = every_s if every_s is not None else float(
            os.environ.get("PERSONAHUB_PROGRESS_EVERY", LINE_EVERY_S))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = ""

    def line(self) -> str:
        """Return the plain progress line: each phase's count and ETA, then the call counts."""
        parts = []
        for task in self.tasks:
            total = f"/{int(task.total)}" if task.total is not None else ""
            parts.append(f"{task.description} {int(task.completed)}{total}{_eta(task)}")
        if self.stats is not None:
            parts.append(calls_text(self.stats))
        return "; ".join(parts)

    def update(self, task_id: Any, *args: Any, **kwargs: Any) -> None:
        """Rich's update; with every_update, a progress line when a count moved."""
        before = self._tasks[task_id].completed if task_id in self._tasks else None
        super().update(task_id, *args, **kwargs)
        if self.every_update and self._tasks[task_id].completed != before:
            self._print_line()

    def advance(self, task_id: Any, advance: float = 1) -> None:
        """Rich's advance; with every_update, a progress line."""
        super().advance(task_id, advance)
        if self.every_update:
            self._print_line()

    def _report(self) -> None:
        while not self._stop.wait(self.every_s):
            self._print_line()

    def _print_line(self) -> None:
        text = self.line()
        if text and text != self._last:
            self._last = text
            self.console.print(f"progress: {text}", highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> JobProgress:
        super().__enter__()
        if self.disable and self.every_s > 0 and not self.console.quiet:
            self._thread = threading.Thread(target=self._report, name="progress-lines", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            if exc[0] is None:  # where it ended, once (an error says so itself, in one line)
                self._print_line()
        super().__exit__(*exc)
