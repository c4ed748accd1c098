"""The server's settings: one frozen, keyword-only value object with its defaults."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from progress_sync import (
    DEFAULT_CAPACITY,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_CONCURRENT_JOBS,
    DEFAULT_MAX_QUEUED_JOBS,
    DEFAULT_REDIS_PREFIX,
    DEFAULT_RETENTION,
    MEMORY_STORE_URL,
    SyncMode,
    is_shared_store,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_REGISTRATION_TIMEOUT = 20.0
"""Seconds a stream waits for its job to be registered before it ends with ``job-error``."""
DEFAULT_RETRY_MS = 2000
"""The SSE ``retry:`` field sent at stream start, in milliseconds."""
DEFAULT_HEARTBEAT_INTERVAL = 15.0
"""Seconds of silence after which a stream sends a ``:`` comment line (a heartbeat).

The WHATWG HTML standard, section 9.2.7 "Authoring notes", suggests a comment line every 15
seconds or so against legacy proxies that drop idle HTTP connections."""
DEFAULT_GRACEFUL_TIMEOUT = 5.0
"""Seconds a shutdown may take to drain: open streams get their last events, then are cut."""
DEFAULT_SEND_TIMEOUT = 10.0
"""Seconds one write to a client may wait for the client to take data before it is dropped."""
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
"""Seconds an idle connection (no request under way) stays open; Hypercorn's own default.

It also bounds the wait for a connection's first complete request head: Hypercorn's keep-alive
timer runs from the accept until a whole head has arrived."""
DEFAULT_SHUTDOWN_RETRY_SPREAD_MS = 5000
"""Width, in milliseconds, of the window over which clients come back after a shutdown."""
DEFAULT_MAX_SUBSCRIBERS = 10_000
"""Open SSE streams per server process; more get 503 with ``Retry-After``."""
DEFAULT_MAX_STREAM_JOBS = 100
"""Most ``jobIds`` one multi-job stream may follow."""
DEFAULT_SUBSCRIBE_TOKEN_TTL = 86400.0
"""Seconds a subscribe token stays valid after it was issued (one day)."""
DEFAULT_MAX_BATCH_UPDATES = 10_000
"""Updates one ``POST /api/progress`` may carry."""
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Bytes a request body may hold (4 MiB): about 40,000 batch lines of 100 bytes."""
MIN_SUBSCRIBE_SECRET_LENGTH = 16
"""Characters a subscribe secret needs at least (``secrets.token_urlsafe(32)`` gives 43)."""

_ORIGIN = re.compile(r"https?://[^/\s]+")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Settings of ``progress-sync serve``.

    Attributes:
        host: the address to listen on (default ``127.0.0.1``).
        port: the TCP port (default 8000; 0 picks a free one).
        sync_mode: ``batched`` (default) or ``direct``.
        flush_interval: seconds between buffer flushes (default 0.5).
        buffer_capacity: reports the buffer's channel holds (default 8192).
        max_concurrent_jobs: jobs the runner runs at once (default 4).
        max_queued_jobs: jobs that may wait for a slot (default 1000); more get 503.
        registration_timeout: seconds a stream waits for its job to be registered (default 20).
        retry_ms: the SSE ``retry:`` value in milliseconds (default 2000).
        heartbeat_interval: seconds of silence before a heartbeat comment (default 15).
        graceful_timeout: the drain timeout: seconds a shutdown may take from SIGTERM until
            the last connection is cut (default 5).
        send_timeout: seconds a write to a client may wait for the client to take data before
            the client is dropped (default 10).
        keep_alive_timeout: seconds an idle connection stays open between requests, and the
            most a new connection may take to send its first complete request head (default
            5, Hypercorn's default).
        shutdown_retry_spread_ms: at shutdown, each stream still open gets a ``retry:`` drawn
            from ``retry_ms`` to ``retry_ms + shutdown_retry_spread_ms`` milliseconds (default
            5000), so clients do not all come back at once.
        max_subscribers: open SSE streams per server process; more get 503 (default 10000).
            A multi-job stream counts once.
        max_stream_jobs: most ``jobIds`` in one multi-job stream (default 100).
        cors_origins: origins (``https://app.example.com``) allowed to use the API from a
            browser, or ``("*",)`` for any; none by default.
        producer_token: the bearer token producer endpoints (create, ingest, finish, cancel)
            require in ``Authorization: Bearer``; None (default) leaves them open. Kept out of
            ``repr``.
        subscribe_secret: the server secret that signs per-job subscribe tokens; when set,
            reading a job needs its token (``?token=``). None (default): reading is open.
            At least ``MIN_SUBSCRIBE_SECRET_LENGTH`` characters; kept out of ``repr``.
        subscribe_token_ttl: seconds a subscribe token stays valid (default one day).
        max_batch_updates: updates one ``POST /api/progress`` may carry (default 10,000).
        max_body_bytes: bytes a request body may hold (default 4 MiB).
        refuse_streams: a testing option: answer every SSE stream route with 503 and a JSON
            error, so clients (the web page) must fall back to polling (default False).
        store: the export store: ``memory`` (default, one process) or a Redis URL
            (``redis://host:port/db``), shared by every process and machine that uses it.
        store_prefix: the Redis key prefix (default ``progress-sync:``).
        job_retention: seconds a job stays in the store after its terminal state (default
            3600).
        workers: server processes sharing the listening socket (default 1); more than one
            needs a shared store (Redis).

    Raises:
        ValueError: a setting is out of range; the message names it.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    sync_mode: SyncMode = SyncMode.BATCHED
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    buffer_capacity: int = DEFAULT_CAPACITY
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS
    registration_timeout: float = DEFAULT_REGISTRATION_TIMEOUT
    retry_ms: int = DEFAULT_RETRY_MS
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    shutdown_retry_spread_ms: int = DEFAULT_SHUTDOWN_RETRY_SPREAD_MS
    max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS
    max_stream_jobs: int = DEFAULT_MAX_STREAM_JOBS
    cors_origins: tuple[str, ...] = ()
    producer_token: str | None = field(default=None, repr=False)
    subscribe_secret: str | None = field(default=None, repr=False)
    subscribe_token_ttl: float = DEFAULT_SUBSCRIBE_TOKEN_TTL
    max_batch_updates: int = DEFAULT_MAX_BATCH_UPDATES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    refuse_streams: bool = False
    store: str = MEMORY_STORE_URL
    store_prefix: str = DEFAULT_REDIS_PREFIX
    job_retention: float = DEFAULT_RETENTION
    workers: int = 1

    @property
    def subscribe_tokens(self) -> bool:
        """True when reading a job needs its subscribe token (a secret is configured)."""
        return self.subscribe_secret is not None

    def __post_init__(self) -> None:  # noqa: C901  # one check a setting
        object.__setattr__(self, "sync_mode", SyncMode(self.sync_mode))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, not {self.port!r}")
        for name in (
            "flush_interval",
            "registration_timeout",
            "heartbeat_interval",
            "graceful_timeout",
            "send_timeout",
            "keep_alive_timeout",
            "subscribe_token_ttl",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        for name in (
            "buffer_capacity",
            "max_concurrent_jobs",
            "max_queued_jobs",
            "retry_ms",
            "workers",
            "max_batch_updates",
            "max_body_bytes",
            "max_subscribers",
            "max_stream_jobs",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        spread = self.shutdown_retry_spread_ms
        if not isinstance(spread, int) or isinstance(spread, bool) or spread < 0:
            raise ValueError(
                f"shutdown_retry_spread_ms must be a whole number >= 0, not {spread!r}"
            )
        if isinstance(self.cors_origins, str):
            raise ValueError("cors_origins must be a tuple of origins, not one string")
        origins = tuple(self.cors_origins)
        for origin in origins:
            if origin != "*" and (
                not isinstance(origin, str) or _ORIGIN.fullmatch(origin.rstrip("/")) is None
            ):
                raise ValueError(
                    f"cors_origins: {origin!r} is no origin; write scheme://host[:port], "
                    "like https://app.example.com, or * for any"
                )
        object.__setattr__(self, "cors_origins", tuple(o.rstrip("/") for o in origins))
        # The messages name the setting, never its value: these are secrets.
        if self.producer_token is not None and (
            not isinstance(self.producer_token, str) or not self.producer_token.strip()
        ):
            raise ValueError("producer_token must be a non-empty string (or None for no token)")
        if self.subscribe_secret is not None and (
            not isinstance(self.subscribe_secret, str)
            or len(self.subscribe_secret) < MIN_SUBSCRIBE_SECRET_LENGTH
        ):
            raise ValueError(
                f"subscribe_secret must be a string of at least {MIN_SUBSCRIBE_SECRET_LENGTH} "
                "characters; make one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        if not isinstance(self.refuse_streams, bool):
            raise ValueError(f"refuse_streams must be True or False, not {self.refuse_streams!r}")
        if not (isinstance(self.job_retention, int | float) and 0 <= self.job_retention < math.inf):
            raise ValueError(
                f"job_retention must be a finite number of seconds >= 0, not {self.job_retention!r}"
            )
        if not isinstance(self.store_prefix, str) or not self.store_prefix:
            raise ValueError(f"store_prefix must be a non-empty string, not {self.store_prefix!r}")
        shared = is_shared_store(self.store)  # a bad store URL is refused here, not later
        if self.workers > 1 and not shared:
            raise ValueError(
                f"workers={self.workers} needs a shared store: the in-memory store lives inside "
                "one process, so a job created or updated in one worker would be invisible to "
                "the streams and polls of the others; use a Redis store "
                "(--store redis://127.0.0.1:6379/0) or one worker"
            )
