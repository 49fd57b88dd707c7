"""The kept share per kind of call: a call is kept when its last attempt is ok; failed calls count
under their last attempt's reason. A resumed job counts its whole history.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from personahub.core.call_log import last_attempt_counts
from personahub.models.failures import plain_reason

if TYPE_CHECKING:
    import duckdb

TOP_REASONS = 3  # reasons named per kind

# plain words where a purpose's name alone is jargon, e.g. "expand (who is close to a persona)"
PURPOSE_WORDS = {
    "expand": "expand (who is close to a persona)",
    "expand:link": "expand, linking (are two personas related)",
}


def purpose_label(kind: str) -> str:
    """Return the purpose in plain words where it has them, else its name."""
    return PURPOSE_WORDS.get(kind, kind)


@dataclass
class KeptShare:
    """One kind's calls: how many were asked, how many kept, and why the others failed."""

    kind: str
    asked: int = 0
    kept: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.asked - self.kept

    def line(self) -> str:
        """Return the kind's share in plain words."""
        return kept_line(purpose_label(self.kind), self.asked, self.kept, self.reasons)


def kept_line(kind: str, asked: int, kept: int, reasons: Counter[str] | dict[str, int]) -> str:
    """"KIND: K of N calls kept (P%); F failed: REASON ×n, ...": model calls, not items returned."""
    share = f"{kept / asked:.0%}" if asked else "-"
    line = f"{kind}: {kept} of {asked} calls kept ({share})"
    failed = asked - kept
    if failed > 0:
        top = sorted(Counter(reasons).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
        named = ", ".join(f"{reason} ×{n}" for reason, n in top)
        line += f"; {failed} failed" + (f": {named}" if named else "")
    return line


def kept_shares(con: duckdb.DuckDBPyConnection, *, run_id: str | None = None, job_kind: str | None = None,
                job_id: str | None = None) -> list[KeptShare]:
    """Each purpose's kept share among the calls of a run or a job."""
    rows = last_attempt_counts(con, run_id=run_id, job_kind=job_kind, job_id=job_id)
    shares: dict[str, KeptShare] = {}
    for purpose, status, error, n in rows:
        kind = str(purpose).removeprefix("synth:")  # a synthesis call is its task's
        share = shares.setdefault(kind, KeptShare(kind))
        share.asked += int(n)
        if status == "ok":
            share.kept += int(n)
        else:
            share.reasons[plain_reason(error)] += int(n)
    return [shares[k] for k in sorted(shares)]


def kept_lines(con: duckdb.DuckDBPyConnection, **job: Any) -> list[str]:
    """Return the kept shares as lines (none when the job made no call)."""
    return [share.line() for share in kept_shares(con, **job)]
