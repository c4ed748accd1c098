"""What the load generator records while a scenario runs: subscriber views, latency, staleness."""

from __future__ import annotations

import math
import os
from array import array

import psutil
import trio
from progress_sync import wall_clock

from ._results import Percentiles

SAMPLE_INTERVAL = 0.1
"""Seconds between two staleness (and memory) samples."""

MAX_SAMPLED_VIEWS = 500
"""Subscriber views sampled for staleness at each sample (evenly spread over all of them)."""

MAX_LATENCY_SAMPLES = 2_000_000
"""Latency samples kept per run; beyond, every other sample is dropped (the spread is kept)."""


class View:
    """What one subscriber shows now: the ``reportedAt`` of its latest snapshot.

    Attributes:
        job: the job's index in the run.
        reported_at: ``reportedAt`` of the latest snapshot received, seconds since the epoch.
        terminal: whether the terminal event arrived.
        connected: whether the first snapshot arrived.
    """

    __slots__ = ("connected", "job", "reported_at", "terminal")

    def __init__(self, job: int) -> None:
        self.job = job
        self.reported_at = 0.0
        self.terminal = False
        self.connected = False


class Recorder:
    """Counters and samples of one run, shared by producers, subscribers and the sampler.

    Attributes:
        truth: per job, ``reportedAt`` of the latest report its producer made.
        views: every subscriber's view.
        measuring: True during the measured window; events count only then.
        events: events (snapshots) received in the window.
        latencies: report-to-client latencies in seconds.
        staleness: staleness samples in seconds.
        reports: reports made (or accepted) in the window.
        producer_seconds: time producers spent reporting, seconds.
    """

    def __init__(self, jobs: int, subscribers_per_job: int) -> None:
        self.truth = [0.0] * jobs
        self.views = [View(j) for j in range(jobs) for _ in range(subscribers_per_job)]
        self.measuring = False
        self.events = 0
        self.latencies = array("d")
        self._latency_stride = 1
        self._latency_skip = 0
        self.staleness = array("d")
        self.reports = 0
        self.producer_seconds = 0.0
        self.connected = 0
        self.terminals = 0
        self.all_connected = trio.Event()
        self.all_terminal = trio.Event()

    def on_connected(self, view: View) -> None:
        """Mark ``view`` as having received its first snapshot."""
        if not view.connected:
            view.connected = True
            self.connected += 1
            if self.connected == len(self.views):
                self.all_connected.set()

    def on_event(self, view: View, reported_at: float, received_at: float) -> None:
        """Record a progress snapshot that reached a subscriber."""
        view.reported_at = reported_at
        if self.measuring:
            self.events += 1
            if self._latency_skip:
                self._latency_skip -= 1
                return
            self.latencies.append(received_at - reported_at)
            self._latency_skip = self._latency_stride - 1
            if len(self.latencies) >= MAX_LATENCY_SAMPLES:
                self.latencies = self.latencies[::2]
                self._latency_stride *= 2

    def on_terminal(self, view: View) -> None:
        """Record the terminal event of one subscriber."""
        if not view.terminal:
            view.terminal = True
            self.terminals += 1
            if self.terminals == len(self.views):
                self.all_terminal.set()

    @property
    def terminal_lost(self) -> int:
        """Subscribers whose terminal event has not arrived."""
        return len(self.views) - self.terminals

    def start_window(self) -> None:
        """Start measuring. Every view counts as up to date until the first report of the
        window: before it there was nothing newer to show."""
        now = wall_clock()
        for view in self.views:
            view.reported_at = max(view.reported_at, now)
        self.measuring = True

    def caught_up(self) -> bool:
        """True when every subscriber shows its job's latest report."""
        truth = self.truth
        return all(view.reported_at >= truth[view.job] for view in self.views)

    def sample_staleness(self) -> None:
        """Add one staleness sample per sampled view (``MAX_SAMPLED_VIEWS`` at most)."""
        views = self.views
        step = max(1, len(views) // MAX_SAMPLED_VIEWS)
        truth = self.truth
        for view in views[::step]:
            lag = truth[view.job] - view.reported_at
            self.staleness.append(lag if lag > 0.0 else 0.0)

    def latency(self) -> Percentiles:
        """The latency distribution, ms."""
        return Percentiles.of_seconds(self.latencies)

    def staleness_summary(self) -> Percentiles:
        """The staleness distribution, ms."""
        return Percentiles.of_seconds(self.staleness)


class PeakRss:
    """Peak resident memory of a process, sampled (psutil), in MiB.

    With ``children=True``, each sample is the sum over the process and its children,
    recursively (the workers of ``serve --workers N``).
    """

    def __init__(self, pid: int | None = None, *, children: bool = False) -> None:
        self._process = psutil.Process(pid if pid is not None else os.getpid())
        self._children = children
        self.peak_bytes = 0

    def sample(self) -> None:
        """Take one sample; a process that has exited keeps its last peak."""
        try:
            processes = [self._process]
            if self._children:
                processes += self._process.children(recursive=True)
        except psutil.Error:
            return
        rss = 0
        for process in processes:
            try:
                rss += process.memory_info().rss
            except psutil.Error:  # exited since it was listed: it holds no memory
                continue
        self.peak_bytes = max(self.peak_bytes, rss)

    @property
    def peak_mb(self) -> float:
        """The peak so far in MiB (NaN before the first sample)."""
        return self.peak_bytes / 2**20 if self.peak_bytes else math.nan


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (OS accounting, psutil); the
    bench's own process by default."""
    times = psutil.Process(pid if pid is not None else os.getpid()).cpu_times()
    return times.user + times.system


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and its children, recursively
    (psutil); a child that exits between being listed and being read counts nothing."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def sample_while_running(recorder: Recorder, rss: PeakRss) -> None:
    """Sample staleness (while measuring) and memory every ``SAMPLE_INTERVAL`` until cancelled."""
    next_sample = trio.current_time()
    while True:
        rss.sample()
        if recorder.measuring:
            recorder.sample_staleness()
        next_sample += SAMPLE_INTERVAL
        await trio.sleep_until(max(next_sample, trio.current_time()))
