"""Upper bounds of the count options, and of the model calls one job plans.

A job's plan is held in memory before it is asked, and a count without a bound let a typo plan
billions of calls until the machine ran out of memory. Each count option has a bound the machine
holds, refused as a usage error like any flag value out of range; the commands' help shows it.
A plan of more model calls than MAX_PLANNED_CALLS is refused in one line that says how to go
past it: ask for fewer, or raise the limit with the PERSONAHUB_MAX_CALLS environment variable.
"""

from __future__ import annotations

import os

from personahub.core.errors import UsageError

# calibrate --n (personas per group) and --no-persona-n (asks per question without a persona)
MAX_GROUP_N = 100_000
# evaluate --samples: answers per solver and item (self-consistency uses tens)
MAX_SAMPLES = 1_000
# experiment --replicates: runs per arm
MAX_REPLICATES = 10_000
# run and experiment --steps, and a scenario's steps
MAX_STEPS = 10_000
# the model calls one job plans, unless PLAN_ENV raises it (a calibration this size peaks near
# 700 MB: bench/RESULTS.md)
MAX_PLANNED_CALLS = 1_000_000
PLAN_ENV = "PERSONAHUB_MAX_CALLS"


def planned_calls_limit() -> int:
    """Return the most model calls one job may plan: PERSONAHUB_MAX_CALLS if set, else MAX_PLANNED_CALLS.
    """
    raw = os.environ.get(PLAN_ENV, "").strip()
    if not raw:
        return MAX_PLANNED_CALLS
    try:
        limit = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise UsageError(f"{PLAN_ENV}={raw!r}: give a whole number of model calls >= 1")
    return limit


def check_plan(calls: int, what: str, fewer: str) -> None:
    """Refuse a plan of more model calls than the limit, before anything is recorded.

    Args:
        calls: the model calls the job would make.
        what: the job, as the message names it ("calibrate", "evaluate").
        fewer: the options that ask for fewer calls, as the message suggests them.

    Raises:
        UsageError: one line with the count, the limit and how to go past it.
    """
    limit = planned_calls_limit()
    if calls > limit:
        raise UsageError(f"{what}: the plan is {calls:,} model calls, more than the {limit:,} one "
                         f"job may plan; ask for fewer ({fewer}), or set {PLAN_ENV}={calls} to "
                         "go past it")
