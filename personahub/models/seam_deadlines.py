"""Straggler deadlines: an attempt far slower than the endpoint's recent answers is cut and asked
again, long before the timeout.

A silently dropped request would otherwise hold its call for the whole timeout (at a 10% hang rate a
run took tens of times its fault-free time). The deadline is a factor times the recent pace's 90th
percentile times the purpose's longest answer, doubled per earlier cut of the call.
"""

from __future__ import annotations

import asyncio
from collections import deque

from personahub.models.seam_limits import FIXED_TOKENS

WINDOW = 64  # answers the pace looks back on
LENGTHS = 16  # answers per purpose the longest-answer estimate looks back on
WARM = 4  # answers before the deadline may be shorter than --timeout (a batch of 8 warms it)
QUANTILE = 0.9
FACTOR = 4.0
MIN_S = 0.25  # no attempt is cut sooner: a loopback server answers in milliseconds
ESCALATION = 2.0  # each earlier straggler of the call doubles the deadline
PROBE_S = 5.0  # a probe's deadline before any answer came (the rest wait for it)


class StragglerDeadlines:
    """One endpoint's recent pace, and the deadline an attempt gets from it. Until warm, attempts get the
    timeout; a mode probe, which all wait for, a short bound.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._paces: deque[float] = deque(maxlen=WINDOW)
        self._pace: float | None = None
        self._lengths: dict[str, deque[int]] = {}
        self._probe_cuts = 0  # probes cut in a row before any answer
        # attempts sent before the estimate existed: loop time, purpose, token limit, stragglers
        self._cold: dict[asyncio.Timeout, tuple[float, str, int, int]] = {}

    @property
    def warm(self) -> bool:
        return self._pace is not None

    def limit(self, purpose: str, max_tokens: int, stragglers: int = 0,
              probe: bool = False) -> float:
        """Seconds the attempt may take."""
        pace = self._pace
        if pace is None:
            if probe:
                return min(self.timeout_s, PROBE_S * ESCALATION ** self._probe_cuts)
            return self.timeout_s
        lengths = self._lengths.get(purpose)
        tokens = min(max_tokens, max(lengths)) if lengths else max_tokens
        seconds = FACTOR * pace * (tokens + FIXED_TOKENS) * ESCALATION ** stragglers
        return min(self.timeout_s, max(MIN_S, seconds))

    def observe(self, purpose: str, latency_s: float, tokens_out: int | None) -> None:
        """Note an answer's latency for a purpose. When the estimate first exists, attempts in flight get
        their
        deadline. An answer of impossible length tells no pace.
        """
        self._probe_cuts = 0
        if tokens_out is None:
            return
        tokens_out = max(0, tokens_out)
        self._paces.append(latency_s / (tokens_out + FIXED_TOKENS))
        lengths = self._lengths.get(purpose)
        if lengths is None:
            lengths = self._lengths[purpose] = deque(maxlen=LENGTHS)
        lengths.append(tokens_out)
        count = len(self._paces)
        if count >= WARM and (self._pace is None or count % WARM == 0):
            cold = self._pace is None
            ranked = sorted(self._paces)
            self._pace = ranked[min(len(ranked) - 1, int(QUANTILE * len(ranked)))]
            if cold and self._cold:
                self._tighten()

    def track(self, scope: asyncio.Timeout, sent: float, purpose: str, max_tokens: int,
              stragglers: int) -> None:
        """Remember an attempt sent before the estimate existed."""
        self._cold[scope] = (sent, purpose, max_tokens, stragglers)

    def untrack(self, scope: asyncio.Timeout) -> None:
        self._cold.pop(scope, None)

    def forget_in_flight(self) -> None:
        """Forget the timeouts in flight: a new event loop has started, and the old one's timeouts are
        gone."""
        self._cold.clear()

    def _tighten(self) -> None:
        for scope, (sent, purpose, max_tokens, stragglers) in list(self._cold.items()):
            when = sent + self.limit(purpose, max_tokens, stragglers)
            current = scope.when()
            if not scope.expired() and current is not None and when < current:
                scope.reschedule(when)
        self._cold.clear()

    def cut_short(self, scope: asyncio.Timeout, sent: float, probe: bool = False) -> bool:
        """Return True when the scope expired before the timeout would have: the attempt was a straggler."""
        when = scope.when()
        cut = scope.expired() and when is not None and when < sent + self.timeout_s - 1e-3
        if cut and probe and self._pace is None:
            self._probe_cuts += 1
        return cut
