"""What a benchmark run measured: one result per scenario and system, and the issue's targets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ._workload import Level, StreamWorkload, System, Workload


@dataclass(frozen=True, kw_only=True)
class Percentiles:
    """A distribution in milliseconds, nearest-rank percentiles.

    Attributes:
        count: how many samples.
        p50: the median, ms.
        p95: ms.
        p99: ms.
        max: the largest sample, ms.
        mean: ms.
    """

    count: int = 0
    p50: float = math.nan
    p95: float = math.nan
    p99: float = math.nan
    max: float = math.nan
    mean: float = math.nan

    @classmethod
    def of_seconds(cls, samples: Iterable[float]) -> Percentiles:
        """Summarise samples given in seconds (reported in milliseconds)."""
        ordered = sorted(samples)
        n = len(ordered)
        if n == 0:
            return cls()

        def rank(q: float) -> float:
            return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] * 1000.0

        return cls(
            count=n,
            p50=rank(0.50),
            p95=rank(0.95),
            p99=rank(0.99),
            max=ordered[-1] * 1000.0,
            mean=sum(ordered) / n * 1000.0,
        )


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """One workload through one system, one round.

    Attributes:
        level: ``inprocess`` or ``http``.
        system: ``batched``, ``direct`` or ``sse-starlette``.
        workload: the workload.
        round: which round (0-based).
        window_s: the measured window, seconds (producers reporting, then until delivered).
        reports: progress reports made (in process) or accepted by the server (HTTP).
        offered_per_s: reports per second the producers tried to make.
        reports_per_s: reports per second sustained (``reports / duration``).
        producer_us_per_report: producer-side cost per report in µs: time inside
            ``report_nowait`` (in process) or inside the ``POST /api/progress`` call (HTTP).
        store_writes: store write operations in the window.
        store_writes_per_s: ``store_writes / window_s``.
        events: snapshots delivered to subscribers (SSE events over HTTP) in the window.
        events_per_s: ``events / window_s``.
        cpu_s: CPU seconds of the server process in the window (OS accounting, user +
            system); in process, of the bench's own process (producers and subscribers too).
        cpu_s_per_1k_reports: ``cpu_s / reports * 1000``.
        client_cpu_s: CPU seconds of the load generator (the bench process) in the window
            (HTTP only): close to ``window_s`` means the client, not the server, was the limit.
        peak_rss_mb: the server process's peak resident memory in MiB (sampled); in process,
            the bench process's.
        latency: report-to-client latency, from each update's ``reportedAt`` to its arrival.
        staleness: how far a subscriber's view lags the job's latest report, sampled every
            0.1 s: the latest report's time minus that of the snapshot the subscriber holds.
        terminal_expected: terminal events that should have arrived (one per subscriber).
        terminal_lost: terminal events that did not arrive (must be 0).
        coalescing_ratio: reports per snapshot written to the store (1.0: no coalescing).
        error: what went wrong, if the run could not be measured.
        notes: caveats of a measured run (a subscriber that did not catch up, say).
        store: the server's export store over HTTP: ``memory`` or ``redis``.
        workers: server processes over HTTP (``serve --workers``). With more than 1,
            ``cpu_s`` and ``peak_rss_mb`` are sums over the workers and their parent, and
            ``reports`` is counted by the producers (the server's counters are per worker);
            ``store_writes`` and ``coalescing_ratio`` are not measured (0 and NaN).
    """

    level: Level
    system: System
    workload: Workload
    round: int = 0
    window_s: float = 0.0
    reports: int = 0
    offered_per_s: float = 0.0
    reports_per_s: float = 0.0
    producer_us_per_report: float = math.nan
    store_writes: int = 0
    store_writes_per_s: float = 0.0
    events: int = 0
    events_per_s: float = 0.0
    cpu_s: float = 0.0
    cpu_s_per_1k_reports: float = math.nan
    client_cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    latency: Percentiles = field(default_factory=Percentiles)
    staleness: Percentiles = field(default_factory=Percentiles)
    terminal_expected: int = 0
    terminal_lost: int = 0
    coalescing_ratio: float = math.nan
    error: str | None = None
    notes: tuple[str, ...] = ()
    store: str = "memory"
    workers: int = 1

    @property
    def ok(self) -> bool:
        """True when the run was measured (no ``error``)."""
        return self.error is None

    @property
    def system_label(self) -> str:
        """``batched``, or ``batched · ws · redis · 2 workers`` off the defaults (``ws``:
        the producers used the persistent connection)."""
        parts = [self.system.value]
        if self.workload.producer != "post":
            parts.append(self.workload.producer)
        if self.store != "memory":
            parts.append(self.store)
        if self.workers > 1:
            parts.append(f"{self.workers} workers")
        return " · ".join(parts)


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    """In-process ingest: ``report_nowait`` against the raw trio channel, in the same run.

    Each round times a loop of ``send_nowait`` of a prebuilt item into a trio memory channel
    (the raw rate), and a loop of ``UpdateBuffer.report_nowait`` (validation, timestamp, the
    ``ProgressUpdate`` and the same ``send_nowait``), ``batch`` calls each; the channel is
    drained between loops, untimed. The best round of each counts (as ``timeit`` does).

    Attributes:
        batch: calls per loop (the buffer's channel capacity).
        rounds: rounds of each.
        raw_per_s: raw ``send_nowait`` calls per second (best round).
        report_nowait_per_s: batched ``report_nowait`` calls per second (best round).
        direct_per_s: direct sync's ``report_nowait`` per second (best round): it starts
            one write task per report.
        ratio: ``report_nowait_per_s / raw_per_s`` (target >= 0.8).
    """

    batch: int
    rounds: int
    raw_per_s: float
    report_nowait_per_s: float
    direct_per_s: float
    ratio: float


@dataclass(frozen=True, kw_only=True)
class StreamResult:
    """The stream path at many connections, for one server.

    Attributes:
        system: ``batched`` (our server) or ``raw-asgi`` (the minimal broadcaster).
        workload: the stream workload.
        connected: connections that opened and got their first event.
        window_s: the measured window, seconds.
        events: SSE events received by all connections in the window.
        events_per_s: ``events / window_s``.
        cpu_s: the server process's CPU seconds in the window.
        events_per_cpu_s: ``events / cpu_s``: what the stream path delivers per CPU-second.
        peak_rss_mb: the server's peak resident memory in MiB (sampled).
        connect_s: seconds it took to open every connection.
        terminal_lost: connections that did not get their final event at the end.
        error: what went wrong, if the run could not be measured.
    """

    system: System
    workload: StreamWorkload
    connected: int = 0
    window_s: float = 0.0
    events: int = 0
    events_per_s: float = 0.0
    cpu_s: float = 0.0
    events_per_cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    connect_s: float = 0.0
    terminal_lost: int = 0
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class Target:
    """One of the issue's targets, checked against figures of the same run.

    Attributes:
        name: what is compared.
        goal: the goal in words (``>= 10x``).
        value: the measured figure (a ratio, or ms), NaN if not measured.
        met: whether the goal is met (None if not measured).
        detail: the figures the value comes from.
    """

    name: str
    goal: str
    value: float
    met: bool | None
    detail: str


@dataclass(frozen=True, kw_only=True)
class Machine:
    """Where the figures come from."""

    hostname: str
    platform: str
    python: str
    cpu: str
    cores: int
    memory_gib: float
    load_average: tuple[float, float, float]


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    """Everything one invocation measured.

    Attributes:
        started_at: ISO-8601 UTC start time.
        command: the command line that ran it.
        machine: the machine.
        runs: every in-process and HTTP run.
        ingest: the ingest comparison, if the in-process level ran.
        stream: the stream comparison runs.
        targets: the issue's targets against this run's figures.
        notes: what was skipped and why.
    """

    started_at: str
    command: str
    machine: Machine
    runs: tuple[RunResult, ...] = ()
    ingest: IngestResult | None = None
    stream: tuple[StreamResult, ...] = ()
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (NaN becomes None)."""
        data: dict[str, Any] = _clean(asdict(self))
        return data


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def median_by(
    runs: Sequence[RunResult], level: Level, system: System, workload: Workload
) -> RunResult | None:
    """The run of ``system`` on ``workload`` at ``level``, the median by CPU per report when
    there are several rounds."""
    matching = [
        r
        for r in runs
        if r.ok and r.level is level and r.system is system and r.workload == workload
    ]
    if not matching:
        return None
    matching.sort(key=lambda r: (math.isnan(r.cpu_s_per_1k_reports), r.cpu_s_per_1k_reports))
    return matching[(len(matching) - 1) // 2]
