"""The server's settings: one frozen, keyword-only value object with its defaults.

Each setting is declared once, as a field of ``ServerConfig`` with its ``Setting``: its default,
its range, its command-line option and environment variable, and its line in the README's
table. The command line (``progress-sync serve``/``demo``) is made from these fields, the
checks of ``__post_init__`` read their ranges, and ``settings_table()`` writes the README's
table (a test fails when the README's copy differs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, cast

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
from progress_sync._buffer import MIN_FLUSH_INTERVAL
from progress_sync._checks import check_seconds, check_whole
from progress_sync._runner import MIN_QUEUED_JOBS

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
CONNECTION_HEADROOM = 1024
"""Connections beyond ``max_subscribers`` the server accepts by default (``max_connections``):
polls, ingest and page loads beside the streams."""
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

SERVER_COMMANDS = ("serve", "demo")
"""The commands that take the server's settings as options."""


@dataclass(frozen=True, kw_only=True)
class Setting:
    """How one field of ``ServerConfig`` is checked, given on the command line, documented.

    Attributes:
        help: the option's help (one line); the README's meaning too, unless ``doc`` says more.
        doc: the README's meaning, when it says more than ``help`` (Markdown).
        minimum: the smallest value allowed, for a number.
        include_minimum: True when ``minimum`` itself is allowed (seconds; whole numbers
            always include it).
        maximum: the largest whole number allowed, or None.
        envvar: True when ``PROGRESS_SYNC_<NAME>`` gives the option too.
        show_envvar: True when ``--help`` names the environment variable (secrets).
        option: the option's name when it is not ``--field-name`` (``--cors-origin``).
        commands: the commands that take it (``serve``, ``demo``); none for settings that
            are not on the command line.
        from_file: True when ``--<option>-file`` may give it instead (secrets).
        default_text: the README's default when it is not the value (``off``, ``none``).
    """

    help: str
    doc: str | None = None
    minimum: float | None = None
    include_minimum: bool = False
    maximum: int | None = None
    envvar: bool = False
    show_envvar: bool = False
    option: str | None = None
    commands: tuple[str, ...] = SERVER_COMMANDS
    from_file: bool = False
    default_text: str | None = None

    def check(self, name: str, kind: str, value: object) -> object:
        """Check a number against the range; return it (seconds as a float).

        Raises:
            ValueError: out of range or of the wrong type (see ``check_seconds`` and
                ``check_whole``).
        """
        if kind == "float" and self.minimum is not None:
            return check_seconds(
                name, value, minimum=self.minimum, include_minimum=self.include_minimum
            )
        if kind == "int | None" and value is None:
            return None
        if kind in ("int", "int | None") and self.minimum is not None:
            return check_whole(name, value, minimum=int(self.minimum), maximum=self.maximum)
        return value


def _setting(default: Any, *, repr: bool = True, **setting: Any) -> Any:
    return field(default=default, repr=repr, metadata={"setting": Setting(**setting)})


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Settings of ``progress-sync serve``.

    Each field's ``Setting`` (in ``dataclasses.fields(ServerConfig)[i].metadata["setting"]``)
    holds its range, its option and its help; ``settings_table()`` lists them all.

    Attributes:
        host: the address to listen on (default ``127.0.0.1``).
        port: the TCP port (default 8000; 0 picks a free one).
        sync_mode: ``batched`` (default) or ``direct``.
        flush_interval: seconds between buffer flushes (default 0.5; at least 0.001).
        buffer_capacity: reports the buffer's channel holds (default 8192).
        max_concurrent_jobs: jobs the runner runs at once (default 4).
        max_queued_jobs: jobs that may wait for a slot (default 1000; 0: none wait); more
            get 503.
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
        max_connections: the most connections open at once per server process; while that
            many are open, new ones wait in the kernel's listen backlog. None (default):
            ``max_subscribers + CONNECTION_HEADROOM``; see ``connection_limit``. The server
            raises its soft file-descriptor limit to hold them at start-up.
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

    host: str = _setting(DEFAULT_HOST, help="Address to listen on.", envvar=True)
    port: int = _setting(
        DEFAULT_PORT,
        help="TCP port (0 picks a free one).",
        doc="TCP port, 0 for a free one",
        minimum=0,
        maximum=65535,
        envvar=True,
    )
    flush_interval: float = _setting(
        DEFAULT_FLUSH_INTERVAL,
        help="Seconds between flushes of the update buffer.",
        minimum=MIN_FLUSH_INTERVAL,
        include_minimum=True,
    )
    sync_mode: SyncMode = _setting(
        SyncMode.BATCHED,
        help="batched: buffer and coalesce; direct: one store write per report.",
        doc="`batched` (buffer + coalesce) or `direct` (one store write per report)",
    )
    max_concurrent_jobs: int = _setting(
        DEFAULT_MAX_CONCURRENT_JOBS, help="Jobs run at once; the rest wait queued.", minimum=1
    )
    max_queued_jobs: int = _setting(
        DEFAULT_MAX_QUEUED_JOBS,
        help="Jobs that may wait queued (0: none); more are refused with 503.",
        doc="jobs that may wait `queued` (0: none); more get 503 with `Retry-After: 5`",
        minimum=MIN_QUEUED_JOBS,
    )
    registration_timeout: float = _setting(
        DEFAULT_REGISTRATION_TIMEOUT,
        help="Seconds a stream waits for its job to be registered.",
        minimum=0,
    )
    producer_token: str | None = _setting(
        None,
        repr=False,
        help="Bearer token producer endpoints require (prefer the environment variable "
        "or --producer-token-file: command lines are visible to other users).",
        doc="bearer token producer endpoints require; see [Authentication](#authentication)",
        envvar=True,
        show_envvar=True,
        from_file=True,
        default_text="none",
    )
    subscribe_secret: str | None = _setting(
        None,
        repr=False,
        help="Secret that signs per-job subscribe tokens; when set, reading a job needs "
        f"its token (?token=). At least {MIN_SUBSCRIBE_SECRET_LENGTH} characters.",
        doc="secret signing per-job subscribe tokens; when set, reading a job needs its token",
        envvar=True,
        show_envvar=True,
        from_file=True,
        default_text="none",
    )
    subscribe_token_ttl: float = _setting(
        DEFAULT_SUBSCRIBE_TOKEN_TTL, help="Seconds a subscribe token stays valid.", minimum=0
    )
    max_batch_updates: int = _setting(
        DEFAULT_MAX_BATCH_UPDATES,
        help="Updates one POST /api/progress may carry (more: 413).",
        doc="updates one `POST /api/progress` may carry (more: 413)",
        minimum=1,
    )
    max_body_bytes: int = _setting(
        DEFAULT_MAX_BODY_BYTES,
        help="Bytes a request body may hold (more: 413).",
        envvar=True,
        minimum=1,
    )
    refuse_streams: bool = _setting(
        False,
        help="Testing: answer stream routes with 503 so clients fall back to polling.",
        doc="testing: answer stream routes with 503 JSON so clients must poll",
        default_text="off",
    )
    store: str = _setting(
        MEMORY_STORE_URL,
        help="Export store: 'memory' (one process) or a Redis URL such as "
        "redis://127.0.0.1:6379/0, shared by every process and machine using it.",
        doc="`memory`, or a Redis URL `redis://host:port/db` shared by every process and machine",
        envvar=True,
    )
    store_prefix: str = _setting(
        DEFAULT_REDIS_PREFIX,
        help="Key prefix in Redis; processes sharing jobs use the same one.",
        envvar=True,
    )
    job_retention: float = _setting(
        DEFAULT_RETENTION,
        help="Seconds a job stays in the store after its terminal state.",
        minimum=0,
        include_minimum=True,
    )
    retry_ms: int = _setting(
        DEFAULT_RETRY_MS,
        help="The SSE retry: field sent at stream start (client reconnection delay, ms).",
        doc="the `retry:` field sent at stream start: the client's reconnection delay, ms",
        envvar=True,
        minimum=1,
    )
    heartbeat_interval: float = _setting(
        DEFAULT_HEARTBEAT_INTERVAL,
        help="Seconds of silence after which a stream sends a ': heartbeat' comment.",
        doc="seconds of silence after which a stream sends a `: heartbeat` comment",
        envvar=True,
        minimum=0,
    )
    send_timeout: float = _setting(
        DEFAULT_SEND_TIMEOUT,
        help="Seconds a client may take no data before it is dropped.",
        envvar=True,
        minimum=0,
    )
    keep_alive_timeout: float = _setting(
        DEFAULT_KEEP_ALIVE_TIMEOUT,
        help="Seconds an idle connection stays open, and a new one may take to send its "
        "first request head.",
        doc="seconds an idle connection stays open between requests, and the most a new "
        "connection may take to send its first complete request head (Hypercorn's default)",
        envvar=True,
        minimum=0,
    )
    graceful_timeout: float = _setting(
        DEFAULT_GRACEFUL_TIMEOUT,
        help="Drain timeout: seconds from SIGTERM until the last connection is cut.",
        envvar=True,
        minimum=0,
    )
    shutdown_retry_spread_ms: int = _setting(
        DEFAULT_SHUTDOWN_RETRY_SPREAD_MS,
        help="At shutdown, streams get a retry: from retry-ms to retry-ms + this (ms).",
        doc="at shutdown, open streams get a `retry:` drawn from `retry-ms` to `retry-ms` + this",
        envvar=True,
        minimum=0,
    )
    max_subscribers: int = _setting(
        DEFAULT_MAX_SUBSCRIBERS,
        help="Open SSE streams per server process; more get 503 with Retry-After.",
        doc="open SSE streams per server; more get 503 with `Retry-After`",
        envvar=True,
        minimum=1,
    )
    max_stream_jobs: int = _setting(
        DEFAULT_MAX_STREAM_JOBS,
        help="Most jobIds in one multi-job stream.",
        doc="most `jobIds` in one multi-job stream",
        envvar=True,
        minimum=1,
    )
    max_connections: int | None = _setting(
        None,
        help="Connections open at once per server process (more wait in the listen "
        "backlog). Default: --max-subscribers + 1024.",
        doc="connections open at once per server process; more wait in the listen backlog. "
        "The soft file-descriptor limit is raised to hold them at start-up",
        default_text="`max-subscribers` + 1024",
        envvar=True,
        minimum=1,
    )
    cors_origins: tuple[str, ...] = _setting(
        (),
        help="An origin (https://app.example.com) allowed to use the API from a browser; "
        "repeat it for more, or * for any. None by default. The environment variable "
        "takes several, separated by spaces.",
        doc="an origin allowed to use the API from a browser (`https://app.example.com`), "
        "repeatable, or `*`; the environment variable takes several separated by spaces",
        envvar=True,
        option="--cors-origin",
        default_text="none",
    )
    buffer_capacity: int = _setting(
        DEFAULT_CAPACITY, help="Reports the buffer's channel holds.", commands=(), minimum=1
    )
    workers: int = _setting(
        1,
        help="Server processes sharing the port (Hypercorn workers); more than 1 needs "
        "--store redis://...",
        doc="`serve` only: server processes sharing the port; more than 1 needs "
        "`--store redis://...`",
        envvar=True,
        commands=("serve",),
        minimum=1,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "sync_mode", SyncMode(self.sync_mode))
        for item in fields(self):
            setting: Setting = item.metadata["setting"]
            value = setting.check(item.name, str(item.type), getattr(self, item.name))
            object.__setattr__(self, item.name, value)
        object.__setattr__(self, "cors_origins", _checked_origins(self.cors_origins))
        _check_secrets(self.producer_token, self.subscribe_secret)
        if not isinstance(self.refuse_streams, bool):
            raise ValueError(f"refuse_streams must be True or False, not {self.refuse_streams!r}")
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

    @property
    def connection_limit(self) -> int:
        """The most connections open at once: ``max_connections``, or by default
        ``max_subscribers + CONNECTION_HEADROOM``."""
        if self.max_connections is not None:
            return self.max_connections
        return self.max_subscribers + CONNECTION_HEADROOM

    @property
    def subscribe_tokens(self) -> bool:
        """True when reading a job needs its subscribe token (a secret is configured)."""
        return self.subscribe_secret is not None


def _checked_origins(cors_origins: object) -> tuple[str, ...]:
    if isinstance(cors_origins, str):
        raise ValueError("cors_origins must be a tuple of origins, not one string")
    origins = tuple(cast("Iterable[object]", cors_origins))  # each is checked below
    for origin in origins:
        if origin != "*" and (
            not isinstance(origin, str) or _ORIGIN.fullmatch(origin.rstrip("/")) is None
        ):
            raise ValueError(
                f"cors_origins: {origin!r} is no origin; write scheme://host[:port], "
                "like https://app.example.com, or * for any"
            )
    return tuple(str(o).rstrip("/") for o in origins)


def _check_secrets(producer_token: object, subscribe_secret: object) -> None:
    # The messages name the setting, never its value: these are secrets.
    if producer_token is not None and (
        not isinstance(producer_token, str) or not producer_token.strip()
    ):
        raise ValueError("producer_token must be a non-empty string (or None for no token)")
    if subscribe_secret is not None and (
        not isinstance(subscribe_secret, str) or len(subscribe_secret) < MIN_SUBSCRIBE_SECRET_LENGTH
    ):
        raise ValueError(
            f"subscribe_secret must be a string of at least {MIN_SUBSCRIBE_SECRET_LENGTH} "
            "characters; make one with: python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'"
        )


def option_name(name: str) -> str:
    """The command-line option of a ``ServerConfig`` field (``--flush-interval``)."""
    setting: Setting = next(f for f in fields(ServerConfig) if f.name == name).metadata["setting"]
    return setting.option or "--" + name.replace("_", "-")


def envvar_name(name: str) -> str:
    """The environment variable of a ``ServerConfig`` field (``PROGRESS_SYNC_PORT``)."""
    return "PROGRESS_SYNC_" + name.upper()


def settings_table() -> str:
    """The README's table of the server's options, made from ``ServerConfig``'s fields."""
    lines = ["| option | default | meaning |", "| --- | --- | --- |"]
    for item in fields(ServerConfig):
        setting: Setting = item.metadata["setting"]
        if not setting.commands:
            continue
        option = option_name(item.name)
        default = setting.default_text or f"`{_plain(item.default)}`"
        meaning = setting.doc or setting.help.rstrip(".")
        if meaning[1:2].islower():  # "Seconds ..." but not "TCP ..."
            meaning = meaning[0].lower() + meaning[1:]
        if setting.envvar:
            meaning += f" (`{envvar_name(item.name)}`)"
        lines.append(f"| `{option}` | {default} | {meaning} |")
        if setting.from_file:
            file_variable = f" (`{envvar_name(item.name)}_FILE`)" if setting.envvar else ""
            lines.append(f"| `{option}-file` | none | file holding it{file_variable} |")
    return "\n".join(lines) + "\n"


def _plain(value: object) -> str:
    if isinstance(value, SyncMode):
        return value.value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
