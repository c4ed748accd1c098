"""The ``progress-sync`` command line (click)."""

from __future__ import annotations

import errno
import importlib
import logging
import sys
from functools import partial

import click
import trio
from rich.console import Console

from pipeline import SyncMode

from ._config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REGISTRATION_TIMEOUT,
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
    )


class _LazyGroup(click.Group):
    """A group whose heavier subcommands are imported only when they run or show their help.

    ``progress-sync bench`` lives in the top-level ``bench`` package; importing it here at
    start-up would make every command pay for it (click's documented pattern, "Lazily
    Loading Subcommands": https://click.palletsprojects.com/en/stable/complex/).
    """

    lazy_subcommands = {"bench": "bench._cli:bench_command"}

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
