"""The issue's targets, checked against the figures of one run (ratios measured side by side)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._results import IngestResult, RunResult, StreamResult, Target, median_by
from ._workload import PRODUCERS, TARGET_WORKLOAD, Level, System, Workload

CPU_RATIO_DIRECT = 10.0
"""Batched must use at least this many times less server CPU per report than direct."""

CPU_RATIO_REFERENCE = 5.0
"""... and at least this many times less than the sse-starlette reference."""

STORE_WRITES_RATIO = 50.0
"""Store writes must drop by at least this factor, batched against direct."""

LATENCY_SLACK_MS = 100.0
"""Batched p99 report-to-client latency may exceed the flush interval by this much, ms."""

INGEST_RATIO = 0.8
"""``report_nowait`` must reach this share of the raw channel's ``send_nowait`` rate."""

STREAM_RATIO = 0.9
"""Our stream path must deliver this share of the raw-ASGI broadcaster's events/CPU-s."""


def _target_workload(runs: Sequence[RunResult], producer: str = "post") -> Workload | None:
    """The HTTP workload closest to the issue's 100 jobs x 100 Hz x 2 subscribers, whose
    producers use ``producer``."""
    candidates = {
        r.workload for r in runs if r.level is Level.HTTP and r.workload.producer == producer
    }
    if not candidates:
        return None
    t = TARGET_WORKLOAD

    def distance(w: Workload) -> tuple[float, float]:
        return (
            abs(math.log(w.jobs / t.jobs))
            + abs(math.log(w.rate / t.rate))
            + abs(math.log(w.subscribers / t.subscribers)),
            -w.duration,
        )

    return min(candidates, key=distance)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0 and math.isfinite(numerator) and math.isfinite(denominator):
        return numerator / denominator
    return math.nan


def _check(name: str, goal: str, value: float, ok: bool, detail: str) -> Target:
    return Target(
        name=name, goal=goal, value=value, met=None if math.isnan(value) else ok, detail=detail
    )


def _http_targets(runs: Sequence[RunResult], workload: Workload) -> list[Target]:
    """The targets of the HTTP level on ``workload`` (direct, batched, the reference)."""
    targets: list[Target] = []
    batched = median_by(runs, Level.HTTP, System.BATCHED, workload)
    direct = median_by(runs, Level.HTTP, System.DIRECT, workload)
    reference = median_by(runs, Level.HTTP, System.SSE_STARLETTE, workload)
    where = f"over HTTP, {workload.label}"
    if batched is not None and direct is not None:
        cpu = _ratio(direct.cpu_s_per_1k_reports, batched.cpu_s_per_1k_reports)
        targets.append(
            _check(
                f"server CPU per report, direct / batched ({where})",
                f">= {CPU_RATIO_DIRECT:g}x",
                cpu,
                cpu >= CPU_RATIO_DIRECT,
                f"{direct.cpu_s_per_1k_reports:.4f} / {batched.cpu_s_per_1k_reports:.4f} "
                "CPU-s per 1,000 reports",
            )
        )
        writes = _ratio(direct.store_writes_per_s, batched.store_writes_per_s)
        targets.append(
            _check(
                f"store writes per second, direct / batched ({where})",
                f">= {STORE_WRITES_RATIO:g}x",
                writes,
                writes >= STORE_WRITES_RATIO,
                f"{direct.store_writes_per_s:,.1f} / {batched.store_writes_per_s:,.1f} writes/s",
            )
        )
    if batched is not None and reference is not None:
        cpu = _ratio(reference.cpu_s_per_1k_reports, batched.cpu_s_per_1k_reports)
        targets.append(
            _check(
                f"server CPU per report, sse-starlette / batched ({where})",
                f">= {CPU_RATIO_REFERENCE:g}x",
                cpu,
                cpu >= CPU_RATIO_REFERENCE,
                f"{reference.cpu_s_per_1k_reports:.4f} / "
                f"{batched.cpu_s_per_1k_reports:.4f} CPU-s per 1,000 reports",
            )
        )
    if batched is not None:
        bound = workload.flush_interval * 1000 + LATENCY_SLACK_MS
        p99 = batched.latency.p99
        targets.append(
            _check(
                f"batched p99 report-to-client latency ({where})",
                f"<= flush interval + {LATENCY_SLACK_MS:g} ms = {bound:g} ms",
                p99,
                p99 <= bound,
                f"p99 {p99:.1f} ms (p50 {batched.latency.p50:.1f}, max {batched.latency.max:.1f})",
            )
        )
    return targets


def evaluate(
    runs: Sequence[RunResult],
    ingest: IngestResult | None,
    stream: Sequence[StreamResult],
) -> tuple[Target, ...]:
    """Check each of the issue's targets against this run's figures (NaN: not measured)."""
    targets: list[Target] = []
    for producer in PRODUCERS:
        workload = _target_workload(runs, producer)
        if workload is not None:
            targets.extend(_http_targets(runs, workload))
    if ingest is not None:
        targets.append(
            _check(
                "in-process ingest, report_nowait / raw send_nowait",
                f">= {INGEST_RATIO:.0%}",
                ingest.ratio,
                ingest.ratio >= INGEST_RATIO,
                f"{ingest.report_nowait_per_s:,.0f} / {ingest.raw_per_s:,.0f} calls/s",
            )
        )
    ours = next((s for s in stream if s.system is System.BATCHED and s.error is None), None)
    raw = next((s for s in stream if s.system is System.RAW_ASGI and s.error is None), None)
    if ours is not None and raw is not None:
        ratio = _ratio(ours.events_per_cpu_s, raw.events_per_cpu_s)
        targets.append(
            _check(
                f"stream path events per CPU-second, ours / raw ASGI "
                f"({ours.workload.connections:,} connections)",
                f">= {STREAM_RATIO:.0%}",
                ratio,
                ratio >= STREAM_RATIO,
                f"{ours.events_per_cpu_s:,.0f} / {raw.events_per_cpu_s:,.0f} events/CPU-s",
            )
        )
    measured = [r for r in runs if r.ok] + [s for s in stream if s.error is None]
    if measured:
        lost = sum(r.terminal_lost for r in measured)
        expected = sum(r.terminal_expected for r in runs if r.ok) + sum(
            s.workload.connections for s in stream if s.error is None
        )
        targets.append(
            _check(
                "terminal events lost, every scenario and system",
                "= 0",
                float(lost),
                lost == 0,
                f"{lost} of {expected:,} lost",
            )
        )
    return tuple(targets)
