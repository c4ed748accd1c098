"""Per-subscriber pace: ``minIntervalMs`` on the streams (one event per job per interval).

A dashboard that follows many jobs rarely wants every change of each (Lightstreamer's
per-subscription "max frequency"). A stream opened with ``minIntervalMs`` sends at most one
``job-progress`` event per job per interval; a change that comes sooner is held, replaced by
any later one (the subscriber always gets the job's latest state), and sent when the
interval has passed. Terminal events and ``job-error`` are never held: they go out at once,
and a held state of that job is dropped (the terminal one supersedes it).
"""

from __future__ import annotations

import math

from progress_sync import JobSnapshot

MAX_MIN_INTERVAL_MS = 60_000
"""The longest ``minIntervalMs`` a stream takes (one minute)."""


class Pacer:
    """Which snapshots a stream sends now and which it holds (see the module docstring).

    Args:
        interval: seconds between two events of one job (0: no pacing).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._held: dict[str, JobSnapshot] = {}

    def admit(self, snapshot: JobSnapshot, now: float) -> bool:
        """True if ``snapshot`` goes out now (counted as sent); False if it is held.

        Args:
            snapshot: a snapshot just received.
            now: trio's clock, seconds.
        """
        job_id = snapshot.job_id
        if self.interval <= 0 or snapshot.is_terminal or now >= self._next.get(job_id, -math.inf):
            self._held.pop(job_id, None)
            self._next[job_id] = now + self.interval
            return True
        self._held[job_id] = snapshot
        return False

    def drop(self, job_id: str) -> None:
        """Forget what is held of ``job_id`` (it is gone)."""
        self._held.pop(job_id, None)

    def due(self, now: float) -> list[JobSnapshot]:
        """The held snapshots whose interval has passed, now counted as sent."""
        ready = [s for job_id, s in self._held.items() if self._next[job_id] <= now]
        for snapshot in ready:
            del self._held[snapshot.job_id]
            self._next[snapshot.job_id] = now + self.interval
        return ready

    def held(self) -> list[JobSnapshot]:
        """Everything held, taken out (a stream that is ending sends it)."""
        held, self._held = list(self._held.values()), {}
        return held

    def wait(self, now: float, longest: float) -> float:
        """Seconds to wait for the next change: ``longest``, or less if a held snapshot is
        due sooner."""
        if not self._held:
            return longest
        soonest = min(self._next[job_id] for job_id in self._held)
        return max(0.0, min(longest, soonest - now))
