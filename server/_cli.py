"""The ``progress-sync`` command line (click)."""

from __future__ import annotations

import errno
import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from functools import partial
from typing import Any, ClassVar

import click
import trio
from progress_sync import MAX_HEARTBEAT_TIMEOUT, ProgressSyncError, StoreUnavailableError, SyncMode
from progress_sync._extras import MissingExtraError, needs_extra
from progress_sync.client import run_command
from progress_sync.client._common import DEFAULT_CLIENT_FLUSH_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT
from rich.console import Console

from ._config import ServerConfig, Setting, envvar_name, option_name

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _server_options(command_name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options of ``command_name``, one per field of ``ServerConfig`` that it takes.

    Made from the fields (their ``Setting``): the defaults, ranges, help and environment
    variables are the ones ``ServerConfig`` declares, so the two cannot drift.
    """
    options = []
    for item in fields(ServerConfig):
        setting: Setting = item.metadata["setting"]
        if command_name in setting.commands:
            options.extend(_options_of(item.name, str(item.type), item.default, setting))

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _options_of(
    name: str, kind: str, default: object, setting: Setting
) -> list[Callable[[Callable[..., None]], Callable[..., None]]]:
    declared: dict[str, Any] = {"help": setting.help}
    if setting.envvar:
        declared["envvar"] = envvar_name(name)
        declared["show_envvar"] = setting.show_envvar
    if kind == "bool":
        declared.update(is_flag=True, default=default)
    elif kind.startswith("tuple"):
        declared.update(multiple=True)
    elif default is not None:
        declared.update(default=_plain_default(default), show_default=True)
    if kind == "SyncMode":
        declared["type"] = click.Choice([mode.value for mode in SyncMode])
    elif kind in ("int", "int | None") and setting.minimum is not None:
        declared["type"] = click.IntRange(int(setting.minimum), setting.maximum)
    elif kind == "float" and setting.minimum is not None:
        declared["type"] = click.FloatRange(setting.minimum, min_open=not setting.include_minimum)
    option = option_name(name)
    options: list[Callable[[Callable[..., None]], Callable[..., None]]] = [
        click.option(option, name, **declared)
    ]
    if setting.from_file:
        file_declared: dict[str, Any] = {
            "type": click.Path(exists=True, dir_okay=False, readable=True),
            "help": f"File holding the {name.replace('_', ' ')}.",
        }
        if setting.envvar:
            file_declared.update(envvar=envvar_name(name) + "_FILE", show_envvar=True)
        options.append(click.option(option + "-file", name + "_file", **file_declared))
    return options


def _plain_default(default: object) -> object:
    return default.value if isinstance(default, SyncMode) else default


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


def _config(**options: Any) -> ServerConfig:
    settings: dict[str, Any] = {}
    for item in fields(ServerConfig):
        if item.name not in options:
            continue
        value = options[item.name]
        if item.metadata["setting"].from_file:
            option = option_name(item.name).removeprefix("--")
            value = read_secret(value, options[item.name + "_file"], option)
        elif item.name == "cors_origins":
            value = tuple(value)
        settings[item.name] = value
    return ServerConfig(**settings)


def _checked_config(**options: Any) -> ServerConfig:
    # ServerConfig's messages name the setting, never a secret's value.
    try:
        return _config(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


class _LazyGroup(click.Group):
    """A group whose heavier subcommands are imported only when they run or show their help.

    ``progress-sync bench`` lives in ``progress_sync.bench``; importing it here at
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
@_server_options("serve")
def serve_command(**options: object) -> None:
    """Serve the API and the SSE streams until Ctrl-C/SIGTERM.

    On the embedded in-memory store by default; with --store redis://host:port/db, several
    workers and machines serve the same jobs.
    """
    config = _checked_config(**options)
    with _needs_server("serve"):
        from ._connections import raise_fd_limit
        from ._gc import tune_garbage_collector
        from ._serve import serve
        from ._workers import run_workers
    try:
        # Here, before any worker starts: workers inherit the raised limit.
        raise_fd_limit(config.connection_limit)
    except OSError as exc:
        raise click.ClickException(exc.strerror or str(exc)) from exc
    with _serving_errors(config):
        if config.workers > 1:
            root = logging.getLogger()
            code = run_workers(config, log_level=root.getEffectiveLevel(), log_format=_LOG_FORMAT)
            if code:
                raise click.ClickException(f"a worker stopped with exit code {code}; see its log")
        else:
            tune_garbage_collector()
            trio.run(serve, config)


@contextmanager
def _needs_server(command: str) -> Iterator[None]:
    """Import the server stack in the block; without the ``server`` extra, say so in one line.

    Raises:
        click.ClickException: a library of the ``server`` extra is missing.
    """
    try:
        with needs_extra("server", f"progress-sync {command}"):
            yield
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _serving_errors(config: ServerConfig) -> Iterator[None]:
    """Turn the errors of starting a server (``serve`` and ``demo``) into one-line messages.

    Raises:
        click.ClickException: the store is unreachable, the address is in use, or it cannot
            be bound (the message says what to change).
    """
    from ._serve import bind_error, is_address_in_use

    try:
        yield
    except StoreUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # run_workers binds in this process, outside any nursery
        if exc.errno != errno.EADDRINUSE:
            raise
        raise click.ClickException(_in_use(config)) from exc
    except BaseExceptionGroup as group:
        if is_address_in_use(group):
            raise click.ClickException(_in_use(config)) from None
        store_down = group.subgroup(StoreUnavailableError)
        if store_down is not None:
            raise click.ClickException(str(_first_leaf(store_down))) from None
        error = bind_error(group)
        if error is None:
            raise
        raise click.ClickException(
            f"cannot listen on {config.host}:{config.port}: {error}; check --host"
        ) from None


def _first_leaf(group: BaseExceptionGroup[StoreUnavailableError]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _in_use(config: ServerConfig) -> str:
    return f"{config.host}:{config.port} is in use; pick another --port (0 picks a free one)"


@main.command("demo")
@_server_options("demo")
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
    with _needs_server("demo"):
        from ._demo_command import run_demo
    console = Console()
    with _serving_errors(config):
        code = trio.run(partial(run_demo, config, console=console, linger=linger))
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
    default=DEFAULT_CLIENT_FLUSH_INTERVAL,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between batches of progress sent to the server.",
)
@click.option(
    "--heartbeat-timeout",
    default=DEFAULT_HEARTBEAT_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0.001, max=MAX_HEARTBEAT_TIMEOUT),
    help="The job's lease in seconds: if this process dies, the server fails the job this "
    "long after it last heard of it (heartbeats are sent meanwhile).",
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
    heartbeat_timeout: float,
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
                heartbeat_timeout=heartbeat_timeout,
                quiet=quiet,
            )
        )
    except ProgressSyncError as exc:
        raise click.ClickException(f"could not run the job: {exc}") from exc
    sys.exit(code)
