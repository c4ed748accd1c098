"""A tqdm progress bar that also reports its progress to a job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from ._snapshot import MAX_STAGE_LENGTH

ReportFunction = Callable[[float, str, "str | None"], None]
"""``report(percent, stage, message)``: ``ThreadJobReporter.report``, ``JobReporter.report``,
or the ``report`` of a progress client's ``for_job(...)``."""


class ReportingTqdm(tqdm):  # type: ignore[type-arg]  # tqdm[T] types the iterable; any goes
    """``tqdm`` that reports ``n / total`` as a job's percent each time it redraws.

    tqdm redraws at most every ``mininterval`` seconds (0.1 by default), so a tight loop
    reports about ten times a second, and once more when the bar closes. Use it where the
    loop runs: in a worker thread with ``ThreadReporter.for_job(job_id).report``, in a trio
    task with ``JobReporter.report``, or in another process with
    ``ProgressClient.for_job(job_id).report``::

        for item in ReportingTqdm(items, report=reporter.for_job("resize-1").report):
            resize(item)

    Args:
        *args: what ``tqdm`` takes (the iterable first).
        report: called as ``report(percent, stage, message)``; percent is 0-100, stage is
            ``stage`` (or the bar's ``desc``), message is ``"n/total unit"``.
        stage: the stage to report; the bar's ``desc`` by default.
        **kwargs: what ``tqdm`` takes. Nothing is reported without a ``total`` (given, or the
            iterable's ``len``), or when ``disable=True``.

    Raises:
        TypeError: ``report`` is missing or not callable.
    """

    def __init__(
        self,
        *args: Any,
        report: ReportFunction | None = None,
        stage: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(report):
            raise TypeError(
                "ReportingTqdm needs report=, a function report(percent, stage, message), "
                "such as ThreadReporter.for_job(job_id).report"
            )
        # Set before tqdm's __init__, which may draw (and so report) at once.
        self._report = report
        self._stage = stage
        self._last_reported: float | None = None
        super().__init__(*args, **kwargs)

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> Any:
        """Redraw the bar (tqdm's ``refresh``) and report its progress."""
        drawn = super().refresh(nolock=nolock, lock_args=lock_args)
        if not self.disable:
            self._report_now()
        return drawn

    def close(self) -> None:
        """Report the final progress once, then close the bar (tqdm's ``close``)."""
        if not getattr(self, "disable", True):
            self._report_now()
        super().close()

    def _report_now(self) -> None:
        total = self.total
        if not total or total <= 0:
            return
        percent = min(100.0, max(0.0, 100.0 * float(self.n) / float(total)))
        if percent == self._last_reported:
            return
        self._last_reported = percent
        stage = self._stage if self._stage is not None else (self.desc or "")
        self._report(percent, stage[:MAX_STAGE_LENGTH], f"{self.n:g}/{total:g} {self.unit}")
