"""What a benchmark run does: the workload knobs, the systems compared and the scenario grids."""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass


class Level(enum.StrEnum):
    """Where a scenario runs.

    ``inprocess``: producers as trio tasks, the store and the subscribers in the bench's own
    process. ``http``: the real server in its own process; producers (``POST /api/progress``)
    and real SSE clients (httpx-sse) in the bench's process, over loopback. ``stream``: many
    SSE connections to one server, our stream path against a minimal raw-ASGI broadcaster.
    """

    INPROCESS = "inprocess"
    HTTP = "http"
    STREAM = "stream"


class System(enum.StrEnum):
    """What serves a scenario: our two sync modes, or a reference a user might pick instead."""

    BATCHED = "batched"
    DIRECT = "direct"
    SSE_STARLETTE = "sse-starlette"
    """Per-update fan-out with sse-starlette on uvicorn (the ``bench`` extra)."""
    RAW_ASGI = "raw-asgi"
    """A minimal raw-ASGI SSE broadcaster on the same Hypercorn
    (``progress_sync.bench._raw_asgi``)."""


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One workload, run the same way through every system it is compared on.

    Attributes:
        jobs: jobs reporting at once.
        rate: progress reports per second per job (Hz).
        subscribers: subscribers per job (SSE clients over HTTP).
        duration: seconds the producers report for (the measured window).
        flush_interval: the update buffer's flush interval in seconds (batched mode).
        producer: how the HTTP level's producers send their batches: ``post`` (one
            ``POST /api/progress`` each) or ``ws`` (frames of the persistent connection,
            ``GET /api/progress/ws``: the progress client's default path).

    Raises:
        ValueError: a knob is out of range; the message names it.
    """

    jobs: int = 100
    rate: float = 100.0
    subscribers: int = 2
    duration: float = 5.0
    flush_interval: float = 0.5
    producer: str = "post"

    def __post_init__(self) -> None:
        if self.producer not in PRODUCERS:
            raise ValueError(
                f"producer must be one of {', '.join(PRODUCERS)}, not {self.producer!r}"
            )
        for name in ("jobs", "subscribers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        for name in ("rate", "duration", "flush_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and 0 < value < math.inf
            ):
                raise ValueError(f"{name} must be a positive finite number, not {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def offered_rate(self) -> float:
        """Reports per second the producers try to make, all jobs together."""
        return self.jobs * self.rate

    @property
    def connections(self) -> int:
        """Subscribers in all (SSE connections over HTTP)."""
        return self.jobs * self.subscribers

    @property
    def label(self) -> str:
        """``"100 jobs x 100 Hz x 2 subs"`` (``... · ws`` for the WebSocket producers)."""
        label = f"{self.jobs} jobs x {self.rate:g} Hz x {self.subscribers} subs"
        return label if self.producer == "post" else f"{label} · {self.producer}"


PRODUCERS = ("post", "ws")
"""The HTTP level's producer paths (``Workload.producer``)."""


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""How a Redis URL starts (coredis's ``Redis.from_url``)."""

EXAMPLE_REDIS_URL = "redis://127.0.0.1:6379/0"


MAX_INPROCESS_OFFERED = 100_000.0
"""Offered reports per second above which the default in-process grid skips a scenario."""

MAX_HTTP_OFFERED = 20_000.0
"""Offered reports per second above which the default HTTP grid skips a scenario."""

TARGET_WORKLOAD = Workload(jobs=100, rate=100.0, subscribers=2)
"""The issue's target scenario: 100 jobs x 100 updates/s x 2 subscribers per job."""


def grid(
    jobs: Iterable[int],
    rates: Iterable[float],
    subscribers: Iterable[int],
    *,
    duration: float,
    flush_interval: float,
    max_offered: float = math.inf,
) -> list[Workload]:
    """Every combination of the knobs, skipping those above ``max_offered`` reports/s."""
    return [
        Workload(jobs=j, rate=r, subscribers=s, duration=duration, flush_interval=flush_interval)
        for j, r, s in itertools.product(jobs, rates, subscribers)
        if j * r <= max_offered
    ]


@dataclass(frozen=True, kw_only=True)
class StreamWorkload:
    """The stream-path comparison: many SSE connections, the same event rate on each.

    Attributes:
        connections: SSE connections held open at once.
        jobs: jobs they follow on our server (``connections / jobs`` subscribers each).
        duration: seconds measured once every connection is open.
        flush_interval: our flush interval, and the broadcaster's interval between events
            (each connection gets one event per interval from both servers). One second by
            default: 4,000 events a second at 4,000 connections keeps both servers below one
            core, so the figure is the cost of an event, not of a saturated scheduler.

    Raises:
        ValueError: a knob is out of range; the message names it.
    """

    connections: int = 4000
    jobs: int = 40
    duration: float = 10.0
    flush_interval: float = 1.0

    def __post_init__(self) -> None:
        for name in ("connections", "jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        if self.jobs > self.connections:
            raise ValueError(f"jobs ({self.jobs}) must not exceed connections ({self.connections})")
        for name in ("duration", "flush_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and 0 < value < math.inf
            ):
                raise ValueError(f"{name} must be a positive finite number, not {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def label(self) -> str:
        """``"4000 connections (40 jobs)"``."""
        return f"{self.connections} connections ({self.jobs} jobs)"


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything one ``bench`` invocation runs.

    Attributes:
        inprocess: in-process workloads (each run batched and direct).
        http: HTTP workloads (each run batched, direct and, if installed, sse-starlette).
        stream: the stream-path comparison, or None to skip it.
        rounds: how many times each scenario runs every system; the order of the systems
            alternates (A B, B A, ...) so that drift on a noisy machine hits both alike.
        ingest_rounds: rounds of the raw-channel / ``report_nowait`` ingest comparison.
        reference: run the sse-starlette reference over HTTP (when it is installed).
        store: the export store of our servers at the HTTP level: None for the embedded
            in-memory store, or a Redis URL (``redis://host:port/db``).
        workers: server processes of our servers at the HTTP level (``serve --workers``);
            more than 1 needs a Redis ``store``.
        scale_out: run the HTTP workloads batched with 1 worker and with ``workers`` (2 by
            default) alternating, on the Redis ``store``, instead of the systems comparison.

    Raises:
        ValueError: a knob is out of range, or several workers (or ``scale_out``) without
            a Redis store; the message says what to give.
    """

    inprocess: tuple[Workload, ...] = ()
    http: tuple[Workload, ...] = ()
    stream: StreamWorkload | None = None
    rounds: int = 1
    ingest_rounds: int = 7
    reference: bool = True
    store: str | None = None
    workers: int = 1
    scale_out: bool = False

    def __post_init__(self) -> None:
        for name in ("rounds", "ingest_rounds", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        redis = self.store is not None and self.store.startswith(REDIS_SCHEMES)
        if self.store is not None and not redis:
            raise ValueError(
                f"store must be a Redis URL such as {EXAMPLE_REDIS_URL}, not {self.store!r} "
                "(leave it out for the in-memory store)"
            )
        if self.workers > 1 and not redis:
            raise ValueError(
                f"workers={self.workers} needs a Redis store (--store {EXAMPLE_REDIS_URL}): "
                "each worker is its own process, and the in-memory store is not shared"
            )
        if self.scale_out and not redis:
            raise ValueError(
                f"scale-out needs a Redis store (--store {EXAMPLE_REDIS_URL}): the workers "
                "share jobs through it"
            )

    @property
    def scale_out_workers(self) -> int:
        """The worker count the scale-out runs compare with 1 worker (``workers``, or 2)."""
        return self.workers if self.workers > 1 else 2


def default_plan() -> Plan:
    """The default grid: about ten minutes on 2 cores.

    In process: jobs 10/100/1000 x rates 10/100/1000 Hz x subscribers 1/10, up to
    ``MAX_INPROCESS_OFFERED`` reports/s, 4 s each. Over HTTP: 100 jobs x 10/30/100 Hz x 2
    subscribers, 10 jobs x 1000 Hz x 2, and 100 jobs x 100 Hz x 10 subscribers, 8 s each.
    The stream comparison at 4,000 connections, 10 s.
    """
    inprocess = grid(
        (10, 100, 1000),
        (10, 100, 1000),
        (1, 10),
        duration=4.0,
        flush_interval=0.5,
        max_offered=MAX_INPROCESS_OFFERED,
    )
    http = [
        *grid((100,), (10, 30, 100), (2,), duration=8.0, flush_interval=0.5),
        Workload(jobs=10, rate=1000, subscribers=2, duration=8.0),
        Workload(jobs=100, rate=100, subscribers=10, duration=8.0),
        # the target scenario again, its producers on the persistent connection
        Workload(jobs=100, rate=100, subscribers=2, duration=8.0, producer="ws"),
    ]
    return Plan(inprocess=tuple(inprocess), http=tuple(http), stream=StreamWorkload())


def quick_plan() -> Plan:
    """``--quick``: the target scenario at each level and a small stream comparison, < 1 min."""
    return Plan(
        inprocess=(
            Workload(jobs=100, rate=100, subscribers=2, duration=1.5),
            Workload(jobs=10, rate=1000, subscribers=1, duration=1.5),
        ),
        http=(
            Workload(jobs=100, rate=100, subscribers=2, duration=2.5),
            Workload(jobs=100, rate=100, subscribers=2, duration=2.5, producer="ws"),
        ),
        stream=StreamWorkload(connections=400, jobs=4, duration=2.0),
        ingest_rounds=5,
    )
