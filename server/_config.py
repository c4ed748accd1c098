"""The server's settings: one frozen, keyword-only value object with its defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline import (
    DEFAULT_CAPACITY,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_CONCURRENT_JOBS,
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
"""Seconds of silence after which a stream sends a ``:`` comment line (a heartbeat)."""
DEFAULT_GRACEFUL_TIMEOUT = 5.0
"""Seconds Hypercorn gives open connections to finish when the server shuts down."""
DEFAULT_SUBSCRIBE_TOKEN_TTL = 86400.0
"""Seconds a subscribe token stays valid after it was issued (one day)."""
DEFAULT_MAX_BATCH_UPDATES = 10_000
"""Updates one ``POST /api/progress`` may carry."""
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Bytes a request body may hold (4 MiB): about 40,000 batch lines of 100 bytes."""
MIN_SUBSCRIBE_SECRET_LENGTH = 16
"""Characters a subscribe secret needs at least (``secrets.token_urlsafe(32)`` gives 43)."""


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
        registration_timeout: seconds a stream waits for its job to be registered (default 20).
        retry_ms: the SSE ``retry:`` value in milliseconds (default 2000).
        heartbeat_interval: seconds of silence before a heartbeat comment (default 15).
        graceful_timeout: seconds open connections get to finish at shutdown (default 5).
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
    registration_timeout: float = DEFAULT_REGISTRATION_TIMEOUT
    retry_ms: int = DEFAULT_RETRY_MS
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "sync_mode", SyncMode(self.sync_mode))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, not {self.port!r}")
        for name in (
            "flush_interval",
            "registration_timeout",
            "heartbeat_interval",
            "graceful_timeout",
            "subscribe_token_ttl",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        for name in (
            "buffer_capacity",
            "max_concurrent_jobs",
            "retry_ms",
            "workers",
            "max_batch_updates",
            "max_body_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
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
