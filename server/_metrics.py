"""Prometheus metrics of a server (prometheus-client), served at ``GET /metrics``.

Counters the pipeline keeps anyway (``UpdateSink.statistics()``, ``ExportStore.statistics()``)
are read when ``/metrics`` is scraped, so reporting costs nothing extra. What only the streams
see (events sent, heartbeats, report-to-send latency) is counted as it happens. Each server has
its own registry, so several servers in one process (tests) never collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from progress_sync import ExportStore, JobSnapshot, JobStatus, UpdateSink, wall_clock
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .sse._framing import EVENT_FOR_STATUS, JOB_ERROR_EVENT, RECONNECT_EVENT

if TYPE_CHECKING:
    from .sse._admission import StreamHub

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: report-to-send latency is about one flush interval (0.5 s by default)."""

FLUSH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
"""Seconds: one store write of a coalesced batch (microseconds in memory, ms with Redis)."""


class Metrics:
    """The metrics of one server.

    Attributes:
        registry: the registry ``/metrics`` renders.
        events_sent: SSE events sent, by ``event`` name (``job-progress``, ...).
        heartbeats: heartbeat comments sent.
        terminal_events: terminal events sent (``job-completed``, ``job-failed``,
            ``job-cancelled``).
        report_to_send: seconds from a report (the snapshot's ``reportedAt``, the producer's
            timestamp) until its event was written to a client.
        flush_duration: seconds each buffer flush's store write took.
        clients_dropped: clients dropped by the server, by ``reason``: ``send_timeout`` (a
            write waited longer than ``send_timeout``), ``tcp_user_timeout`` (the kernel
            aborted the connection: the client took no data for ``send_timeout``). Each
            connection counts once, whichever saw it first.
        open_connections: connections accepted and not yet closed.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.events_sent = Counter(
            "progress_sync_events_sent",
            "SSE events sent to clients, by event name.",
            ["event"],
            registry=registry,
        )
        self.heartbeats = Counter(
            "progress_sync_heartbeats", "Heartbeat comment lines sent.", registry=registry
        )
        self.terminal_events = Counter(
            "progress_sync_terminal_events",
            "Terminal events (job-completed, job-failed, job-cancelled) sent.",
            registry=registry,
        )
        self.report_to_send = Histogram(
            "progress_sync_report_to_send_seconds",
            "Seconds from a progress report (its reportedAt) until its event was sent.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.flush_duration = Histogram(
            "progress_sync_flush_duration_seconds",
            "Seconds one flush of the update buffer took to write its batch.",
            buckets=FLUSH_BUCKETS,
            registry=registry,
        )
        self.clients_dropped = Counter(
            "progress_sync_clients_dropped",
            "Clients dropped by the server, by reason.",
            ["reason"],
            registry=registry,
        )
        self.open_connections = Gauge(
            "progress_sync_open_connections",
            "Connections accepted and not yet closed.",
            registry=registry,
        )
        self._open_peers: set[tuple[str, int]] = set()
        self._dropped_peers: set[tuple[str, int]] = set()
        # Children bound once: the stream's hot path does no label lookup.
        self._sent_by_status = {
            status: self.events_sent.labels(event=name) for status, name in EVENT_FOR_STATUS.items()
        }
        self.job_error_sent = self.events_sent.labels(event=JOB_ERROR_EVENT)
        self.reconnect_sent = self.events_sent.labels(event=RECONNECT_EVENT)
        self._observe_latency = self.report_to_send.observe
        self._terminal_inc = self.terminal_events.inc
        self._collector = _PipelineCollector()
        registry.register(self._collector)

    def watch(self, store: ExportStore, sink: UpdateSink, hub: StreamHub) -> None:
        """Read the pipeline's counters from ``store``, ``sink`` and ``hub`` at each scrape."""
        self._collector.sources = (store, sink, hub)

    def connection_opened(self, peer: tuple[str, int] | None) -> None:
        """Count a connection accepted from ``peer`` (host, port)."""
        self.open_connections.inc()
        if peer is not None:
            self._open_peers.add(peer)

    def connection_closed(self, peer: tuple[str, int] | None) -> None:
        """Count the connection from ``peer`` closed."""
        self.open_connections.dec()
        if peer is not None:
            self._open_peers.discard(peer)
            self._dropped_peers.discard(peer)

    def client_dropped(self, peer: tuple[str, int] | None, reason: str) -> None:
        """Count the client at ``peer`` (host, port) dropped for ``reason``, once per connection.

        A client that stops reading is seen both by the app's send timeout and by the kernel's
        ``TCP_USER_TIMEOUT`` abort; it is counted under whichever came first.
        """
        if peer is not None and peer in self._open_peers:
            if peer in self._dropped_peers:
                return
            self._dropped_peers.add(peer)
        self.clients_dropped.labels(reason=reason).inc()

    def snapshot_sent(self, snapshot: JobSnapshot, *, since: float = 0.0) -> None:
        """Count one snapshot event written to a client, and its report-to-send latency.

        Args:
            snapshot: the snapshot sent.
            since: when the stream opened (seconds since the epoch). A snapshot stored before
                that is the state the client connected to, not a change delivered live: it is
                counted, but its age is not a latency and is left out of the histogram.
        """
        self._sent_by_status[snapshot.status].inc()
        if snapshot.updated_at >= since:
            # The clock reports are stamped with in this process (producers elsewhere send
            # theirs).
            self._observe_latency(max(0.0, wall_clock() - snapshot.reported_at))
        if snapshot.status in _TERMINAL:
            self._terminal_inc()


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class _PipelineCollector(Collector):
    def __init__(self) -> None:
        self.sources: tuple[ExportStore, UpdateSink, StreamHub] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.sources is None:
            return
        store, sink, hub = self.sources
        sink_stats = sink.statistics()
        store_stats = store.statistics()
        counters = (
            ("reports_received", "Progress reports accepted.", sink_stats.reports_received),
            (
                "reports_coalesced",
                "Reports replaced by a later one for the same job before being written.",
                sink_stats.coalesced,
            ),
            (
                "reports_overflowed",
                "Reports that found the buffer's channel full (kept in the overflow map).",
                sink_stats.overflowed,
            ),
            ("flushes", "Flushes of the update buffer that wrote a batch.", sink_stats.flushes),
            (
                "flush_failures",
                "Flushes that failed (store unavailable or an error); retried.",
                sink_stats.failed_writes,
            ),
            ("store_writes", "Write operations on the export store.", store_stats.writes),
            (
                "store_notifications",
                "Snapshots offered to subscribers by the store.",
                store_stats.notifications,
            ),
            (
                "lower_percent_kept",
                "Progress reports with a lower percent and no reset: the higher percent was kept.",
                store_stats.lower_percent_kept,
            ),
            (
                "leases_expired",
                "Jobs this process ended failed because their lease expired.",
                store_stats.leases_expired,
            ),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(f"progress_sync_{name}", documentation, value=value)
        gauges = (
            ("buffer_depth", "Reports waiting in the update buffer.", sink_stats.pending),
            ("subscribers", "Subscriptions open on the export store.", store_stats.subscribers),
            ("open_streams", "SSE streams admitted and not ended.", hub.admitted),
            ("jobs", "Jobs held by the export store.", store_stats.jobs),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(f"progress_sync_{name}", documentation, value=value)
