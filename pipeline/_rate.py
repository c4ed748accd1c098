"""A job's rate (percent per second) and time left, smoothed where reports are applied.

The algorithm (the same in ``MemoryStore`` here and in the Redis store's Lua scripts, which
take these constants as arguments):

1. Each job keeps an *anchor*: the percent and ``reportedAt`` of the report that closed the
   last sample. An applied report at least ``RATE_MIN_SAMPLE_S`` seconds (producer time) after
   the anchor closes a sample: ``r = (percent - anchor percent) / (reportedAt - anchor time)``.
   Reports closer together than that leave the rate as it is (coalesced batches and bursts
   would otherwise make noisy samples).
2. A sample that advanced (``r > 0``) updates the smoothed rate, an exponentially weighted
   moving average with time constant ``RATE_TAU_S``: ``rate += (1 - exp(-dt / tau)) * (r -
   rate)`` (the first sample sets it). ``dt`` weighs each sample by the time it covers, so
   the result does not depend on how often the producer reports.
3. A sample that did not advance (a pause) leaves the rate unchanged, marks the job
   *stalled* and moves the anchor; the first report that advances again moves the anchor to
   itself and clears the mark. The pause is left out of the rate, so when the job resumes the
   rate goes on from where it was instead of collapsing and climbing back (no wild swing of
   the time left).
4. ``etaSeconds = (100 - percent) / rate``, once the rate is built from at least
   ``RATE_MIN_HISTORY_S`` seconds of advancing samples; null before that, while stalled, and
   in terminal states. A producer's own ``etaSeconds`` on a report wins over it.
5. A ``reset`` report (a new attempt) forgets the rate: it is rebuilt from the new attempt.

Values published: ``rate`` rounded to ``RATE_DECIMALS`` decimals, ``etaSeconds`` to
``ETA_DECIMALS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RATE_TAU_S = 10.0
"""Time constant of the rate's moving average, in seconds: a change of speed shows 63% in
the rate after this long."""

RATE_MIN_SAMPLE_S = 1.0
"""Shortest stretch of producer time, in seconds, that makes one rate sample."""

RATE_MIN_HISTORY_S = 2.0
"""Seconds of advancing samples needed before ``etaSeconds`` is published."""

RATE_DECIMALS = 4
"""Decimals of the published ``rate`` (percent per second)."""

ETA_DECIMALS = 1
"""Decimals of the published ``etaSeconds``."""


@dataclass(frozen=True, slots=True)
class RateState:
    """What the store keeps per job to smooth its rate (not published as such).

    Attributes:
        anchor_at: ``reportedAt`` of the report that closed the last sample (or the first
            report), seconds since the epoch; None before any report.
        anchor_percent: the percent of that report.
        rate: the smoothed rate in percent per second, or None before the first sample.
        span: seconds of advancing samples the rate is built from.
        stalled: the latest sample did not advance.
    """

    anchor_at: float | None = None
    anchor_percent: float = 0.0
    rate: float | None = None
    span: float = 0.0
    stalled: bool = False

    def advance(self, percent: float, at: float, *, reset: bool = False) -> RateState:
        """The state after an applied report of ``percent`` made at ``at`` (see the module)."""
        if reset or self.anchor_at is None:
            return RateState(anchor_at=at, anchor_percent=percent)
        if self.stalled and percent > self.anchor_percent:
            # Resumed: start the next sample here, so no sample mixes pause and work.
            return RateState(at, percent, self.rate, self.span, stalled=False)
        dt = at - self.anchor_at
        if dt < RATE_MIN_SAMPLE_S:
            return self
        advanced = percent - self.anchor_percent
        if advanced <= 0:
            return RateState(at, percent, self.rate, self.span, stalled=True)
        sample = advanced / dt
        if self.rate is None:
            rate = sample
        else:
            rate = self.rate + (1.0 - math.exp(-dt / RATE_TAU_S)) * (sample - self.rate)
        return RateState(at, percent, rate, self.span + dt, stalled=False)

    def published(self, percent: float) -> tuple[float | None, float | None]:
        """``(rate, etaSeconds)`` as a running snapshot shows them at ``percent``."""
        rate = None if self.rate is None else round(self.rate, RATE_DECIMALS)
        if self.rate is None or self.stalled or self.span < RATE_MIN_HISTORY_S:
            return rate, None
        return rate, round((100.0 - percent) / self.rate, ETA_DECIMALS)


def rate_lua_arguments() -> list[str]:
    """The constants the Redis apply script takes: tau, min sample (the history rule and the
    rounding are applied in Python when the snapshot is decoded)."""
    return [repr(RATE_TAU_S), repr(RATE_MIN_SAMPLE_S)]


def format_time_left(eta_seconds: float | None) -> str | None:
    """``etaSeconds`` in words, as the page, ``progress-sync demo`` and ``run`` show it:
    ``about 40 s left``, ``about 3 min left``, ``about 2 h left``; None for None."""
    if eta_seconds is None or not eta_seconds >= 0:
        return None
    if eta_seconds < 1:
        return "less than a second left"
    if eta_seconds < 90:
        return f"about {round(eta_seconds)} s left"
    if eta_seconds < 90 * 60:
        return f"about {round(eta_seconds / 60)} min left"
    return f"about {round(eta_seconds / 3600)} h left"
