"""The scale-out comparison over HTTP: batched on Redis with 1 worker against N workers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ._results import RunResult


@dataclass(frozen=True, kw_only=True)
class ScaleOut:
    """N workers against 1 worker on the same workload (medians over the rounds).

    Attributes:
        workload: the workload's label.
        workers: N.
        reports_per_s: sustained reports/s, N workers ÷ 1 worker.
        events_per_s: SSE events/s delivered, N workers ÷ 1 worker.
        cpu_per_report: server CPU seconds per report (parent and workers), N ÷ 1
            (above 1: each report costs more CPU with N workers).
        one: the 1-worker medians (reports/s, events/s, CPU s per 1k reports).
        many: the N-worker medians, the same figures.
    """

    workload: str
    workers: int
    reports_per_s: float
    events_per_s: float
    cpu_per_report: float
    one: tuple[float, float, float]
    many: tuple[float, float, float]

    def describe(self) -> str:
        """One line: the ratios and the figures they come from."""
        one, many = self.one, self.many
        return (
            f"scale-out {self.workload}, {self.workers} workers ÷ 1 worker (batched, Redis): "
            f"reports/s {self.reports_per_s:.2f}x ({many[0]:,.0f} ÷ {one[0]:,.0f}), "
            f"events/s {self.events_per_s:.2f}x ({many[1]:,.0f} ÷ {one[1]:,.0f}), "
            f"server CPU per report {self.cpu_per_report:.2f}x "
            f"({many[2]:.4f} ÷ {one[2]:.4f} CPU-s per 1k reports)"
        )


def _median(runs: Sequence[RunResult]) -> tuple[float, float, float]:
    return (
        statistics.median(r.reports_per_s for r in runs),
        statistics.median(r.events_per_s for r in runs),
        statistics.median(r.cpu_s_per_1k_reports for r in runs),
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def scale_out(runs: Sequence[RunResult]) -> list[ScaleOut]:
    """One ``ScaleOut`` per HTTP workload measured (without error) with 1 worker and with
    more; runs of other levels, stores or sync modes pair only with their like."""
    comparisons: list[ScaleOut] = []
    measured = [r for r in runs if r.ok and r.level.value == "http" and r.store != "memory"]
    keys = dict.fromkeys((r.workload, r.system) for r in measured)
    for workload, system in keys:
        like = [r for r in measured if (r.workload, r.system) == (workload, system)]
        ones = [r for r in like if r.workers == 1]
        for n in sorted({r.workers for r in like if r.workers > 1}):
            many = [r for r in like if r.workers == n]
            if not ones or not many:
                continue
            one_m, many_m = _median(ones), _median(many)
            comparisons.append(
                ScaleOut(
                    workload=workload.label,
                    workers=n,
                    reports_per_s=_ratio(many_m[0], one_m[0]),
                    events_per_s=_ratio(many_m[1], one_m[1]),
                    cpu_per_report=_ratio(many_m[2], one_m[2]),
                    one=one_m,
                    many=many_m,
                )
            )
    return comparisons
