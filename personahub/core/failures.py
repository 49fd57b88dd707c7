"""The job-level failure policy: when a step or batch of model calls stops the job.

Endpoint failures (HTTP errors, timeouts) stop a job when more than half of a batch failed at the
endpoint. Quality failures (invalid, cut off, rejected) already had a fresh sample, and stop it only
past the allowed failed share. Retrying a call is the model layer's business.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from personahub.core.errors import ResumableStop

if TYPE_CHECKING:
    from personahub.core.contracts import CallRecord

ENDPOINT_FAIL_SHARE = 0.5
ENDPOINT_FAIL_MIN = 3
DEFAULT_MAX_FAILED_SHARE = 0.8
QUALITY_FAIL_MIN_ACTIONS = 5
# how an endpoint failure reads in the log, after a job's prefix
_ENDPOINT_ERROR = re.compile(r"(?:^|: )(?:HTTP \d{3}\b|timeout\b|connection error\b)")


class ModelRejected(ResumableStop):
    """The endpoint rejects every request for one reason, or a batch failed the policy: the job stops,
    resumable.
    """


def endpoint_error(error: str | None) -> bool:
    """Whether a failed action's error is the endpoint's (not the model's answer)."""
    return bool(error) and _ENDPOINT_ERROR.search(str(error)) is not None


def most_common_error(records: Sequence[CallRecord]) -> str | None:
    """Return the most frequent error among failed attempts (None when none failed)."""
    errors = Counter(r.error for r in records if r.status != "ok" and r.error)
    return errors.most_common(1)[0][0] if errors else None


def _fix(error: str, records: Sequence[CallRecord]) -> str:
    """Return a likely fix for the most common error of a stopped step or batch."""
    modes = {str(r.structured_mode).split(" without ")[0] for r in records
             if getattr(r, "structured_mode", None)}
    if endpoint_error(error):
        return "check the --llm server (its log says more)"
    if "max_tokens" in error:
        return "the answers run past max_tokens: raise --max-tokens, or use a model that keeps to the task"
    if error.startswith("rejected") or "quality gate" in error:
        return ("the model's answers fail the quality checks: use a larger model, or raise "
                "--max-failed-share to keep going")
    if modes and modes <= {"json_object", "json_schema"}:
        return "the model's answers do not fit the task: use a larger model"
    return ("the model's answers do not fit the schemas: try --structured json_object "
            "(grammar-constrained on llama.cpp servers), or a larger model")


def batch_failure(what: str, actions: int, errors: Sequence[str | None], records: Sequence[CallRecord],
                  max_failed_share: float = DEFAULT_MAX_FAILED_SHARE) -> str | None:
    """Return a one-line reason to stop after a batch with these errors, else None."""
    failed = len(errors)
    endpoint = sum(endpoint_error(e) for e in errors)
    if endpoint >= ENDPOINT_FAIL_MIN and endpoint > actions * ENDPOINT_FAIL_SHARE:
        ended = [e for e in errors if endpoint_error(e)]
        error = str(Counter(ended).most_common(1)[0][0])
        return (f"{endpoint} of {actions} actions failed at the endpoint in {what} (most often: "
                f"{error[:160]}); {_fix(error, records)}")
    if actions < QUALITY_FAIL_MIN_ACTIONS or failed <= actions * max_failed_share:
        return None
    named = Counter(e for e in errors if e).most_common(1)
    error = (most_common_error(records) or (named[0][0] if named else None)
             or "the answers failed the quality checks")
    return (f"{failed} of {actions} actions failed in {what}, over --max-failed-share "
            f"{max_failed_share:g} (most often: {error[:160]}); {_fix(error, records)}")


def call_error(result: object) -> str | None:
    """Why a call has no value (its last attempt's error); None when it has one."""
    if getattr(result, "value", None) is not None:
        return None
    records = getattr(result, "records", None) or ()
    return (getattr(records[-1], "error", None) if records else None) or "no valid answer"
