"""``--concurrency auto``: the AIMD limit, alone and behind the seam, against simulated servers.

No wall clock: the simulated server's latency is counted in event-loop turns (a clock task bumps
a counter once per turn), and the limit only reads the latencies the records report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from personahub.core.contracts import CallRequest, Failure, StructuredResult
from personahub.core.engine_options import check_concurrency
from personahub.core.errors import UsageError
from personahub.models.adaptive_limit import AUTO_CEILING, AdaptiveLimit, concurrency_bound
from personahub.models.seam_limits import Limited
from personahub.models.settings import LLMConfigError, LLMSettings


class _Answer(BaseModel):
    text: str


def _request(purpose: str = "survey") -> CallRequest:
    return CallRequest(_Answer, [], purpose, 64)


def _saturate(limit: AdaptiveLimit) -> None:
    limit._saturated = True  # as when every slot was taken


# --- the state machine alone -------------------------------------------------------------------

def test_slow_start_grows_by_one_per_success_while_the_window_is_full() -> None:
    limit = AdaptiveLimit(start=2)
    for expected in (3, 4, 5):
        _saturate(limit)
        limit.succeeded("survey", 0.01, limit.epoch)
        assert limit.limit == expected
    limit.succeeded("survey", 0.01, limit.epoch)  # the window was not full: no growth
    assert limit.limit == 5 and limit.peak == 5


def test_after_a_cut_it_grows_by_one_per_window_of_successes() -> None:
    limit = AdaptiveLimit(start=8)
    limit.overloaded("429", limit.epoch)
    assert limit.limit == 4 and limit.cuts == {"429": 1}
    for _ in range(3):
        _saturate(limit)
        limit.succeeded("survey", 0.01, limit.epoch)
    assert limit.limit == 4  # three successes: the window (4) is not done
    limit.succeeded("survey", 0.01, limit.epoch)
    assert limit.limit == 5


def test_one_cut_per_round_failures_sent_before_the_cut_do_not_cut_again() -> None:
    limit = AdaptiveLimit(start=16)
    sent_at = limit.epoch
    for _ in range(10):  # ten calls in flight at 16 all refused: one cut, not ten
        limit.overloaded("503", sent_at)
    assert limit.limit == 8 and limit.cuts == {"503": 1}
    limit.succeeded("survey", 0.01, sent_at)  # an old call's answer teaches nothing either
    assert limit._samples == 0
    limit.overloaded("timeout", limit.epoch)
    assert limit.limit == 4 and limit.cuts == {"503": 1, "timeout": 1}


def test_never_below_one_nor_above_the_ceiling() -> None:
    limit = AdaptiveLimit(start=2, ceiling=3)
    for _ in range(5):
        _saturate(limit)
        limit.succeeded("survey", 0.01, limit.epoch)
    assert limit.limit == 3 == limit.peak
    for _ in range(4):
        limit.overloaded("429", limit.epoch)
    assert limit.limit == 1


def test_latency_well_above_the_best_seen_is_queueing() -> None:
    limit = AdaptiveLimit(start=4, queue_factor=3.0, smoothing=1.0)
    limit._slow_start = False
    for _ in range(4):
        _saturate(limit)
        limit.succeeded("survey", 0.01, limit.epoch)  # the baseline: 10 ms per token
    assert limit.limit == 5
    limit.succeeded("judge", 0.2, limit.epoch)  # another purpose has its own baseline
    assert limit.cuts == {}
    for _ in range(6):
        _saturate(limit)
        limit.succeeded("survey", 0.025, limit.epoch)  # 2.5x: latency no longer holds
    assert limit.cuts == {} and limit.limit == 5  # no growth, no cut either
    _saturate(limit)
    limit.succeeded("survey", 0.05, limit.epoch)  # 5x the best with every slot taken
    assert limit.cuts == {"queueing": 1} and limit.limit == 2


def test_one_late_answer_is_not_a_queue() -> None:
    limit = AdaptiveLimit(start=4, queue_factor=3.0)  # smoothing 0.25
    limit._slow_start = False
    for _ in range(4):
        _saturate(limit)
        limit.succeeded("survey", 0.01, limit.epoch)
    _saturate(limit)
    limit.succeeded("survey", 30.0, limit.epoch)  # a hung worker's answer, 3000x late
    assert limit.cuts == {}  # smoothed, it weighs 2.5x the best, not 750x
    for _ in range(8):
        _saturate(limit)
        limit.succeeded("survey", 0.06, limit.epoch)  # every answer 6x: a queue
    assert limit.cuts.get("queueing", 0) >= 1


def test_a_new_event_loop_goes_on_from_what_was_learned() -> None:
    old = AdaptiveLimit(start=2)
    old.overloaded("429", old.epoch)
    for _ in range(3):
        _saturate(old)
        old.succeeded("survey", 0.01, old.epoch)
    new = AdaptiveLimit(start=2)
    new.carry_from(old)
    assert (new.limit, new.peak, new.cuts) == (old.limit, old.peak, {"429": 1})


def test_bad_parameters_are_refused() -> None:
    for kwargs in ({"ceiling": 0}, {"decrease": 1.0}, {"grow_factor": 1.0}, {"smoothing": 0.0},
                   {"grow_factor": 4.0, "queue_factor": 3.0}):
        with pytest.raises(ValueError):
            AdaptiveLimit(**kwargs)  # type: ignore[arg-type]


def test_the_setting_is_a_number_or_auto() -> None:
    assert check_concurrency("auto") == "auto" and check_concurrency(" AUTO ") == "auto"
    assert check_concurrency("8") == 8 and check_concurrency(3) == 3
    for bad in ("0", "fast", 0, -2, True, 1.5, "-3", "+2"):
        with pytest.raises(UsageError, match="--concurrency must be a whole number >= 1"):
            check_concurrency(bad)
    assert LLMSettings(concurrency="auto").max_in_flight == AUTO_CEILING == concurrency_bound("auto")
    assert LLMSettings(concurrency=5).max_in_flight == 5
    with pytest.raises(LLMConfigError):
        LLMSettings(concurrency="many")  # type: ignore[arg-type]


# --- behind the seam, against a simulated server ----------------------------------------------

@dataclass
class SimServer:
    """A server with ``slots`` parallel slots: a call started with ``n`` in flight takes
    ``base * max(1, n / slots)`` turns of the event loop (its share of the slots), and that is
    the latency its record reports. ``rate_limit``: more than that many in flight get a 429."""

    slots: int
    base: int = 8
    rate_limit: int | None = None
    label: str = "sim"
    in_flight: int = 0
    most_in_flight: int = 0
    refused: int = 0
    answered: int = 0
    limits_seen: list[int] = field(default_factory=list)

    async def call(self, request: CallRequest) -> StructuredResult[Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.rate_limit is not None and self.in_flight > self.rate_limit:
                self.refused += 1
                await asyncio.sleep(0)
                record = request.record(model=self.label, status="error", latency_ms=1.0)
                return StructuredResult(None, [record], None,
                                        failure=Failure("HTTP 429: slow down", True, 429))
            turns = max(self.base, round(self.base * self.in_flight / self.slots))
            for _ in range(turns):
                await asyncio.sleep(0)
            self.answered += 1
            record = request.record(model=self.label, status="ok", latency_ms=float(turns),
                                    tokens_out=10)
            return StructuredResult(None, [record], '{"text": "hi"}')
        finally:
            self.in_flight -= 1


def _drive(server: SimServer, concurrency: Any, calls: int, workers: int = 96) -> tuple[Limited, int]:
    """``calls`` calls from ``workers`` tasks through ``Limited``; the loop turns it took."""
    layer = Limited(server, concurrency=concurrency)  # type: ignore[arg-type]

    async def main() -> int:
        queue = list(range(calls))
        turns = 0
        done = asyncio.Event()

        async def clock() -> None:
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        async def worker() -> None:
            while queue:
                queue.pop()
                await layer.call(_request())
                if layer.slots is not None:
                    server.limits_seen.append(layer.slots.limit)

        ticking = asyncio.create_task(clock())
        await asyncio.gather(*[worker() for _ in range(workers)])
        done.set()
        await ticking
        return turns

    return layer, asyncio.run(main())


def test_auto_grows_while_throughput_grows_and_stops_where_the_server_queues() -> None:
    auto, auto_turns = _drive(SimServer(slots=4), "auto", 600)
    report = auto.report()
    assert report["setting"] == "auto" and report["start"] == 2
    assert report["peak"] >= 4  # it found the server's four slots...
    assert report["peak"] < AUTO_CEILING and report["final"] <= 12  # ...and stopped queueing
    assert report["cuts"].get("queueing", 0) >= 1  # slow start overshot once
    _, one_turns = _drive(SimServer(slots=4), 1, 600)
    _, four_turns = _drive(SimServer(slots=4), 4, 600)
    assert auto_turns < one_turns / 2  # far faster than one at a time
    assert auto_turns < four_turns * 1.35  # close to the best fixed setting


def test_auto_backs_off_on_429_and_holds_below_the_rate_limit() -> None:
    server = SimServer(slots=64, rate_limit=6)
    layer, _ = _drive(server, "auto", 600)
    report = layer.report()
    assert report["cuts"].get("429", 0) >= 1
    assert server.refused > 0 and server.answered > 0
    tail = server.limits_seen[-100:]
    assert max(tail) <= 8  # settled around the rate limit, not at the ceiling
    assert report["peak"] < AUTO_CEILING


def test_a_fixed_limit_is_reported_as_set() -> None:
    layer, _ = _drive(SimServer(slots=4), 3, 20)
    assert layer.report() == {"setting": 3, "final": 3, "peak": 3}
    assert Limited(SimServer(slots=1), concurrency="auto").report()["final"] is None  # no call yet
