"""The ``progress-sync`` command line (click)."""

from __future__ import annotations

import errno
import logging
import sys
from functools import partial

import click
import trio
from rich.console import Console

from pipeline import DEFAULT_REDIS_PREFIX, DEFAULT_RETENTION, StoreUnavailableError, SyncMode

from ._config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REGISTRATION_TIMEOUT,
    ServerConfig,
)
from ._demo import run_demo
from ._serve import is_address_in_use, serve
from ._workers import run_workers

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
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _config(**options: object) -> ServerConfig:
    return ServerConfig(
        host=str(options["host"]),
        port=int(options["port"]),  # type: ignore[call-overload]
        flush_interval=float(options["flush_interval"]),  # type: ignore[arg-type]
        sync_mode=SyncMode(options["sync_mode"]),
        max_concurrent_jobs=int(options["max_concurrent_jobs"]),  # type: ignore[call-overload]
        registration_timeout=float(options["registration_timeout"]),  # type: ignore[arg-type]
        refuse_streams=bool(options["refuse_streams"]),
        store=str(options["store"]),
        store_prefix=str(options["store_prefix"]),
        job_retention=float(options["job_retention"]),  # type: ignore[arg-type]
        workers=int(options.get("workers", 1)),  # type: ignore[call-overload]
    )


def _checked_config(**options: object) -> ServerConfig:
    try:
        return _config(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


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
            trio.run(serve, config)
    except StoreUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # run_workers binds in this process, outside any nursery
        if exc.errno != errno.EADDRINUSE:
            raise
        raise click.ClickException(_in_use(config)) from exc
    except BaseExceptionGroup as group:
        if not is_address_in_use(group):
            raise
        raise click.ClickException(_in_use(config)) from None


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
    config = _checked_config(**options)
    console = Console()
    try:
        code = trio.run(partial(run_demo, config, console=console, linger=linger))
    except* StoreUnavailableError as group:
        raise click.ClickException(str(group.exceptions[0])) from group
    sys.exit(code)
