"""The ``progress-sync`` command line (click)."""

from __future__ import annotations

import errno
import importlib
import logging
import sys
from collections.abc import Callable
from functools import partial
from typing import ClassVar

import click
import trio
from progress_sync import (
    DEFAULT_REDIS_PREFIX,
    DEFAULT_RETENTION,
    ProgressSyncError,
    StoreUnavailableError,
    SyncMode,
)
from progress_sync.client import run_command
from rich.console import Console

from ._config import (
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HOST,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_BATCH_UPDATES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_STREAM_JOBS,
    DEFAULT_MAX_SUBSCRIBERS,
    DEFAULT_PORT,
    DEFAULT_REGISTRATION_TIMEOUT,
    DEFAULT_RETRY_MS,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SHUTDOWN_RETRY_SPREAD_MS,
    DEFAULT_SUBSCRIBE_TOKEN_TTL,
    ServerConfig,
)
from ._demo import run_demo
from ._gc import tune_garbage_collector
from ._serve import bind_error, is_address_in_use, serve
from ._workers import run_workers

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _server_options(command: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option(
            "--host",
            default=DEFAULT_HOST,
            show_default=True,
            envvar="PROGRESS_SYNC_HOST",
            help="Address to listen on.",
        ),
        click.option(
            "--port",
            default=DEFAULT_PORT,
            show_default=True,
            type=click.IntRange(0, 65535),
            envvar="PROGRESS_SYNC_PORT",
            help="TCP port (0 picks a free one).",
        ),
        click.option(
            "--flush-interval",
            default=0.5,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds between flushes of the update buffer.",
        ),
        click.option(
            "--sync-mode",
            default="batched",
            show_default=True,
            type=click.Choice([m.value for m in SyncMode]),
            help="batched: buffer and coalesce; direct: one store write per report.",
        ),
        click.option(
            "--max-concurrent-jobs",
            default=4,
            show_default=True,
            type=click.IntRange(min=1),
            help="Jobs run at once; the rest wait queued.",
        ),
        click.option(
            "--max-queued-jobs",
            default=1000,
            show_default=True,
            type=click.IntRange(min=1),
            help="Jobs that may wait queued; more are refused with 503.",
        ),
        click.option(
            "--registration-timeout",
            default=DEFAULT_REGISTRATION_TIMEOUT,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds a stream waits for its job to be registered.",
        ),
        *_auth_options(),
        click.option(
            "--max-batch-updates",
            default=DEFAULT_MAX_BATCH_UPDATES,
            show_default=True,
            type=click.IntRange(min=1),
            help="Updates one POST /api/progress may carry (more: 413).",
        ),
        click.option(
            "--max-body-bytes",
            default=DEFAULT_MAX_BODY_BYTES,
            show_default=True,
            type=click.IntRange(min=1),
            envvar="PROGRESS_SYNC_MAX_BODY_BYTES",
            help="Bytes a request body may hold (more: 413).",
        ),
        click.option(
            "--refuse-streams",
            is_flag=True,
            default=False,
            help="Testing: answer stream routes with 503 so clients fall back to polling.",
        ),
        click.option(
            "--store",
            default="memory",
            show_default=True,
            envvar="PROGRESS_SYNC_STORE",
            help="Export store: 'memory' (one process) or a Redis URL such as "
            "redis://127.0.0.1:6379/0, shared by every process and machine using it.",
        ),
        click.option(
            "--store-prefix",
            default=DEFAULT_REDIS_PREFIX,
            show_default=True,
            envvar="PROGRESS_SYNC_STORE_PREFIX",
            help="Key prefix in Redis; processes sharing jobs use the same one.",
        ),
        click.option(
            "--job-retention",
            default=DEFAULT_RETENTION,
            show_default=True,
            type=click.FloatRange(min=0),
            help="Seconds a job stays in the store after its terminal state.",
        ),
        *_stream_options(),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _stream_options() -> list:  # type: ignore[type-arg]
    return [
        click.option(
            "--retry-ms",
            default=DEFAULT_RETRY_MS,
            show_default=True,
            type=click.IntRange(min=1),
            envvar="PROGRESS_SYNC_RETRY_MS",
            help="The SSE retry: field sent at stream start (client reconnection delay, ms).",
        ),
        click.option(
            "--heartbeat-interval",
            default=DEFAULT_HEARTBEAT_INTERVAL,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            envvar="PROGRESS_SYNC_HEARTBEAT_INTERVAL",
            help="Seconds of silence after which a stream sends a ': heartbeat' comment.",
        ),
        click.option(
            "--send-timeout",
            default=DEFAULT_SEND_TIMEOUT,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            envvar="PROGRESS_SYNC_SEND_TIMEOUT",
            help="Seconds a client may take no data before it is dropped.",
        ),
        click.option(
            "--keep-alive-timeout",
            default=DEFAULT_KEEP_ALIVE_TIMEOUT,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            envvar="PROGRESS_SYNC_KEEP_ALIVE_TIMEOUT",
            help="Seconds an idle connection stays open, and a new one may take to send its "
            "first request head.",
        ),
        click.option(
            "--graceful-timeout",
            default=DEFAULT_GRACEFUL_TIMEOUT,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            envvar="PROGRESS_SYNC_GRACEFUL_TIMEOUT",
            help="Drain timeout: seconds from SIGTERM until the last connection is cut.",
        ),
        click.option(
            "--shutdown-retry-spread-ms",
            default=DEFAULT_SHUTDOWN_RETRY_SPREAD_MS,
            show_default=True,
            type=click.IntRange(min=0),
            envvar="PROGRESS_SYNC_SHUTDOWN_RETRY_SPREAD_MS",
            help="At shutdown, streams get a retry: from retry-ms to retry-ms + this (ms).",
        ),
        click.option(
            "--max-subscribers",
            default=DEFAULT_MAX_SUBSCRIBERS,
            show_default=True,
            type=click.IntRange(min=1),
            envvar="PROGRESS_SYNC_MAX_SUBSCRIBERS",
            help="Open SSE streams per server process; more get 503 with Retry-After.",
        ),
        click.option(
            "--max-stream-jobs",
            default=DEFAULT_MAX_STREAM_JOBS,
            show_default=True,
            type=click.IntRange(min=1),
            envvar="PROGRESS_SYNC_MAX_STREAM_JOBS",
            help="Most jobIds in one multi-job stream.",
        ),
        click.option(
            "--cors-origin",
            "cors_origins",
            multiple=True,
            envvar="PROGRESS_SYNC_CORS_ORIGINS",
            help="An origin (https://app.example.com) allowed to use the API from a browser; "
            "repeat it for more, or * for any. None by default. The environment variable "
            "takes several, separated by spaces.",
        ),
    ]


def _auth_options() -> list:  # type: ignore[type-arg]
    secret_file = click.Path(exists=True, dir_okay=False, readable=True)
    return [
        click.option(
            "--producer-token",
            envvar="PROGRESS_SYNC_PRODUCER_TOKEN",
            show_envvar=True,
            help="Bearer token producer endpoints require (prefer the environment variable "
            "or --producer-token-file: command lines are visible to other users).",
        ),
        click.option(
            "--producer-token-file",
            envvar="PROGRESS_SYNC_PRODUCER_TOKEN_FILE",
            show_envvar=True,
            type=secret_file,
            help="File holding the producer token.",
        ),
        click.option(
            "--subscribe-secret",
            envvar="PROGRESS_SYNC_SUBSCRIBE_SECRET",
            show_envvar=True,
            help="Secret that signs per-job subscribe tokens; when set, reading a job needs "
            "its token (?token=). At least 16 characters.",
        ),
        click.option(
            "--subscribe-secret-file",
            envvar="PROGRESS_SYNC_SUBSCRIBE_SECRET_FILE",
            show_envvar=True,
            type=secret_file,
            help="File holding the subscribe secret.",
        ),
        click.option(
            "--subscribe-token-ttl",
            default=DEFAULT_SUBSCRIBE_TOKEN_TTL,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds a subscribe token stays valid.",
        ),
    ]


def read_secret(value: object, path: object, option: str) -> str | None:
    """The secret given directly or in a file (stripped), or None; never echoes it.

    Raises:
        click.UsageError: both are given, or the file is empty or unreadable.
    """
    if value is not None and path is not None:
        raise click.UsageError(f"give --{option} or --{option}-file, not both")
    if path is None:
        return None if value is None else str(value)
    try:
        with open(str(path), encoding="utf-8") as file:
            secret = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(
            f"--{option}-file {path}: cannot read it ({type(exc).__name__})"
        ) from None
    if not secret:
        raise click.UsageError(f"--{option}-file {path} is empty")
    return secret


def _config(**options: object) -> ServerConfig:
    return ServerConfig(
        host=str(options["host"]),
        port=int(options["port"]),  # type: ignore[call-overload]
        flush_interval=float(options["flush_interval"]),  # type: ignore[arg-type]
        sync_mode=SyncMode(str(options["sync_mode"])),
        max_concurrent_jobs=int(options["max_concurrent_jobs"]),  # type: ignore[call-overload]
        max_queued_jobs=int(options["max_queued_jobs"]),  # type: ignore[call-overload]
        registration_timeout=float(options["registration_timeout"]),  # type: ignore[arg-type]
        producer_token=read_secret(
            options["producer_token"], options["producer_token_file"], "producer-token"
        ),
        subscribe_secret=read_secret(
            options["subscribe_secret"], options["subscribe_secret_file"], "subscribe-secret"
        ),
        subscribe_token_ttl=float(options["subscribe_token_ttl"]),  # type: ignore[arg-type]
        max_batch_updates=int(options["max_batch_updates"]),  # type: ignore[call-overload]
        max_body_bytes=int(options["max_body_bytes"]),  # type: ignore[call-overload]
        refuse_streams=bool(options["refuse_streams"]),
        store=str(options["store"]),
        store_prefix=str(options["store_prefix"]),
        job_retention=float(options["job_retention"]),  # type: ignore[arg-type]
        workers=int(options.get("workers", 1)),  # type: ignore[call-overload]
        retry_ms=int(options["retry_ms"]),  # type: ignore[call-overload]
        heartbeat_interval=float(options["heartbeat_interval"]),  # type: ignore[arg-type]
        send_timeout=float(options["send_timeout"]),  # type: ignore[arg-type]
        graceful_timeout=float(options["graceful_timeout"]),  # type: ignore[arg-type]
        keep_alive_timeout=float(options["keep_alive_timeout"]),  # type: ignore[arg-type]
        shutdown_retry_spread_ms=int(options["shutdown_retry_spread_ms"]),  # type: ignore[call-overload]
        max_subscribers=int(options["max_subscribers"]),  # type: ignore[call-overload]
        max_stream_jobs=int(options["max_stream_jobs"]),  # type: ignore[call-overload]
        cors_origins=tuple(options["cors_origins"]),  # type: ignore[arg-type]
    )


def _checked_config(**options: object) -> ServerConfig:
    # ServerConfig's messages name the setting, never a secret's value.
    try:
        return _config(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


class _LazyGroup(click.Group):
    """A group whose heavier subcommands are imported only when they run or show their help.

    ``progress-sync bench`` lives in the top-level ``bench`` package; importing it here at
    start-up would make every command pay for it (click's documented pattern, "Lazily
    Loading Subcommands": https://click.palletsprojects.com/en/stable/complex/).
    """

    lazy_subcommands: ClassVar[dict[str, str]] = {"bench": "progress_sync.bench._cli:bench_command"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_subcommands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def main(log_level: str) -> None:
    """progress-sync: job progress to browsers over server-sent events."""
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT)


@main.command("serve")
@_server_options
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="PROGRESS_SYNC_WORKERS",
    help="Server processes sharing the port (Hypercorn workers); more than 1 needs --store redis://...",
)
def serve_command(**options: object) -> None:
    """Serve the API and the SSE streams until Ctrl-C/SIGTERM.

    On the embedded in-memory store by default; with --store redis://host:port/db, several
    workers and machines serve the same jobs.
    """
    config = _checked_config(**options)
    try:
        if config.workers > 1:
            root = logging.getLogger()
            code = run_workers(config, log_level=root.getEffectiveLevel(), log_format=_LOG_FORMAT)
            if code:
                raise click.ClickException(f"a worker stopped with exit code {code}; see its log")
        else:
            tune_garbage_collector()
            trio.run(serve, config)
    except StoreUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # run_workers binds in this process, outside any nursery
        if exc.errno != errno.EADDRINUSE:
            raise
        raise click.ClickException(_in_use(config)) from exc
    except BaseExceptionGroup as group:
        if is_address_in_use(group):
            raise click.ClickException(_in_use(config)) from None
        error = bind_error(group)
        if error is None:
            raise
        raise click.ClickException(
            f"cannot listen on {config.host}:{config.port}: {error}; check --host"
        ) from None


def _in_use(config: ServerConfig) -> str:
    return f"{config.host}:{config.port} is in use; pick another --port (0 picks a free one)"


@main.command("demo")
@_server_options
@click.option(
    "--linger",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to keep serving after the demo jobs end.",
)
def demo_command(linger: float, **options: object) -> None:
    """Start a server and a few demo jobs (one fails on purpose) and follow their streams.

    Exits 0 when every stream got its terminal event and each job ended as expected.
    """
    logging.getLogger().setLevel(logging.WARNING)
    if options.get("refuse_streams"):
        raise click.UsageError("the demo follows streams; --refuse-streams is for `serve` only")
    config = _checked_config(**options)
    console = Console()
    try:
        code = trio.run(partial(run_demo, config, console=console, linger=linger))
    except* StoreUnavailableError as group:
        raise click.ClickException(str(group.exceptions[0])) from group
    sys.exit(code)


@main.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--server",
    required=True,
    envvar="PROGRESS_SYNC_SERVER",
    show_envvar=True,
    help="URL of the progress-sync server (http://127.0.0.1:8000).",
)
@click.option(
    "--token",
    envvar="PROGRESS_SYNC_PRODUCER_TOKEN",
    show_envvar=True,
    help="The server's producer token, if it needs one.",
)
@click.option(
    "--token-file",
    envvar="PROGRESS_SYNC_PRODUCER_TOKEN_FILE",
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False, readable=True),
    help="File holding the producer token.",
)
@click.option("--job-id", help="Id of the job to register (default: the server picks one).")
@click.option("--stage", help="Stage to report when the output names none (default: the program).")
@click.option(
    "--flush-interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between batches of progress sent to the server.",
)
@click.option("--quiet", is_flag=True, help="Do not print the job id and outcome on stderr.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cli(
    server: str,
    token: str | None,
    token_file: str | None,
    job_id: str | None,
    stage: str | None,
    flush_interval: float,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND as an external job and report the progress it prints, live.

    Use it as: progress-sync run --server URL [--token T] [--job-id ID] -- CMD ARGS...

    Progress is read from tqdm bars, plain NN% in a line, and ffmpeg's -progress pipe:1
    output; the command's output still reaches the terminal. The job ends completed (exit
    code 0), failed (the exit code and the tail of stderr) or cancelled (Ctrl-C); the exit
    code is the command's.
    """
    logging.getLogger().setLevel(logging.WARNING)
    secret = read_secret(token, token_file, "token")
    try:
        code = trio.run(
            partial(
                run_command,
                list(command),
                server=server,
                token=secret,
                job_id=job_id,
                stage=stage,
                flush_interval=flush_interval,
                quiet=quiet,
            )
        )
    except ProgressSyncError as exc:
        raise click.ClickException(f"could not run the job: {exc}") from exc
    sys.exit(code)
