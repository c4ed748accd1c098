"""The ``progress-sync`` command line (click)."""

from __future__ import annotations

import errno
import logging
import sys
from functools import partial

import click
import trio
from rich.console import Console

from pipeline import SyncMode

from ._config import (
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_STREAM_JOBS,
    DEFAULT_MAX_SUBSCRIBERS,
    DEFAULT_PORT,
    DEFAULT_REGISTRATION_TIMEOUT,
    DEFAULT_RETRY_MS,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SHUTDOWN_RETRY_SPREAD_MS,
    ServerConfig,
)
from ._demo import run_demo
from ._serve import serve

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _server_options(command: click.Command) -> click.Command:
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
            "--registration-timeout",
            default=DEFAULT_REGISTRATION_TIMEOUT,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds a stream waits for its job to be registered.",
        ),
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
            help="Open SSE streams per server; more get 503 with Retry-After.",
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
            "--max-body-bytes",
            default=DEFAULT_MAX_BODY_BYTES,
            show_default=True,
            type=click.IntRange(min=1),
            envvar="PROGRESS_SYNC_MAX_BODY_BYTES",
            help="Largest request body accepted; larger gets 413.",
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
    for option in reversed(options):
        command = option(command)
    return command


def _config(**options: object) -> ServerConfig:
    try:
        return _make_config(**options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _make_config(**options: object) -> ServerConfig:
    return ServerConfig(
        host=str(options["host"]),
        port=int(options["port"]),  # type: ignore[call-overload]
        flush_interval=float(options["flush_interval"]),  # type: ignore[arg-type]
        sync_mode=SyncMode(options["sync_mode"]),
        max_concurrent_jobs=int(options["max_concurrent_jobs"]),  # type: ignore[call-overload]
        registration_timeout=float(options["registration_timeout"]),  # type: ignore[arg-type]
        retry_ms=int(options["retry_ms"]),  # type: ignore[call-overload]
        heartbeat_interval=float(options["heartbeat_interval"]),  # type: ignore[arg-type]
        send_timeout=float(options["send_timeout"]),  # type: ignore[arg-type]
        graceful_timeout=float(options["graceful_timeout"]),  # type: ignore[arg-type]
        shutdown_retry_spread_ms=int(options["shutdown_retry_spread_ms"]),  # type: ignore[call-overload]
        max_subscribers=int(options["max_subscribers"]),  # type: ignore[call-overload]
        max_stream_jobs=int(options["max_stream_jobs"]),  # type: ignore[call-overload]
        max_body_bytes=int(options["max_body_bytes"]),  # type: ignore[call-overload]
        cors_origins=tuple(options["cors_origins"]),  # type: ignore[arg-type]
    )


@click.group()
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
def serve_command(**options: object) -> None:
    """Serve the API and the SSE streams on the embedded in-memory store until Ctrl-C/SIGTERM."""
    config = _config(**options)
    try:
        trio.run(serve, config)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"{config.host}:{config.port} is in use; pick another --port (0 picks a free one)"
            ) from exc
        raise


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
    config = _config(**options)
    console = Console()
    code = trio.run(partial(run_demo, config, console=console, linger=linger))
    sys.exit(code)
