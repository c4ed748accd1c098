"""Run the app under Hypercorn's trio worker, with the services it needs open around it."""

from __future__ import annotations

import errno
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import hypercorn.config
import hypercorn.trio.run
import hypercorn.utils
import trio

from pipeline import DEMO_KIND, ExportStore, open_export_store, open_job_runner, open_update_sink

from ._app import Services, create_app
from ._config import ServerConfig

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_services(
    config: ServerConfig, store: ExportStore | None = None
) -> AsyncIterator[Services]:
    """Open the update sink and the job runner over ``store``.

    By default the store ``config.store`` names is opened too (a new ``MemoryStore`` for
    ``memory``, a ``RedisStore`` for a Redis URL) and closed on exit.

    On exit the runner cancels its jobs (each is written ``cancelled``), then the sink flushes
    what is buffered, so no report made before the exit is lost.

    Raises:
        StoreUnavailableError: the configured Redis could not be reached.
    """
    async with AsyncExitStack() as stack:
        if store is None:
            store = await stack.enter_async_context(
                open_export_store(
                    config.store, retention=config.job_retention, prefix=config.store_prefix
                )
            )
        async with _open_pipeline(config, store) as services:
            yield services


@asynccontextmanager
async def _open_pipeline(config: ServerConfig, store: ExportStore) -> AsyncIterator[Services]:
    async with (
        open_update_sink(
            store,
            config.sync_mode,
            flush_interval=config.flush_interval,
            capacity=config.buffer_capacity,
        ) as sink,
        open_job_runner(
            store, sink, kinds={"demo": DEMO_KIND}, max_concurrent=config.max_concurrent_jobs
        ) as runner,
    ):
        yield Services(config=config, store=store, sink=sink, runner=runner)


def is_address_in_use(group: BaseExceptionGroup) -> bool:
    """True when ``group`` holds an ``OSError`` EADDRINUSE (Hypercorn binds inside its nurseries,
    so a taken port arrives inside an ExceptionGroup)."""
    return (
        group.subgroup(lambda exc: isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE)
        is not None
    )


async def wait_for_shutdown_signal() -> None:
    """Return when the process gets SIGINT (Ctrl-C) or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            return


async def serve(
    config: ServerConfig,
    *,
    store: ExportStore | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    sockets: hypercorn.config.Sockets | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API until ``shutdown_trigger`` returns, then shut down cleanly.

    Use ``await nursery.start(serve, config)`` to get the bound URLs (``["http://127.0.0.1:PORT"]``)
    once the server accepts connections; with ``port=0`` the OS picks a free port.

    Args:
        config: the server's settings.
        store: the export store; by default the one ``config.store`` names, opened here.
        shutdown_trigger: an async function whose return starts the shutdown; by default
            ``wait_for_shutdown_signal`` (SIGINT or SIGTERM).
        sockets: listening sockets made by ``hypercorn_config(config).create_sockets()``
            in a parent process and shared by several workers (see ``run_workers``); by
            default the server binds its own.
        task_status: reports the bound URLs.

    Raises:
        OSError: the address could not be bound (port in use, say).
        StoreUnavailableError: the configured Redis could not be reached at startup.
    """
    settings = hypercorn_config(config)
    async with open_services(config, store) as services:
        app = create_app(services)
        # hypercorn.trio.serve without its check that ``workers`` is 1: each worker process
        # serves on the sockets its parent shares (as hypercorn.run does for its workers).
        await hypercorn.trio.run.worker_serve(
            hypercorn.utils.wrap_app(app, settings.wsgi_max_body_size, None),
            settings,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger or wait_for_shutdown_signal,
            task_status=task_status,
        )
    logger.info("server stopped; buffer flushed")


def hypercorn_config(config: ServerConfig) -> hypercorn.config.Config:
    """The Hypercorn settings of a server with ``config``: bind address, graceful timeout."""
    settings = hypercorn.config.Config()
    settings.bind = [f"{config.host}:{config.port}"]
    settings.graceful_timeout = config.graceful_timeout
    settings.accesslog = None
    # Hypercorn's own errorlog would add a second stderr handler; log through ours instead.
    settings.errorlog = logging.getLogger("hypercorn.error")
    settings.workers = config.workers
    return settings
