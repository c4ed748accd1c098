"""Run the app under Hypercorn's trio worker, with the services it needs open around it."""

from __future__ import annotations

import errno
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import hypercorn.config
import hypercorn.trio
import trio

from pipeline import DEMO_KIND, ExportStore, MemoryStore, open_job_runner, open_update_sink

from ._app import Services, create_app
from ._config import ServerConfig

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_services(
    config: ServerConfig, store: ExportStore | None = None
) -> AsyncIterator[Services]:
    """Open the update sink and the job runner over ``store`` (a new ``MemoryStore`` by default).

    On exit the runner cancels its jobs (each is written ``cancelled``), then the sink flushes
    what is buffered, so no report made before the exit is lost.
    """
    store = store if store is not None else MemoryStore()
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
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API until ``shutdown_trigger`` returns, then shut down cleanly.

    Use ``await nursery.start(serve, config)`` to get the bound URLs (``["http://127.0.0.1:PORT"]``)
    once the server accepts connections; with ``port=0`` the OS picks a free port.

    Args:
        config: the server's settings.
        store: the export store; a new ``MemoryStore`` by default.
        shutdown_trigger: an async function whose return starts the shutdown; by default
            ``wait_for_shutdown_signal`` (SIGINT or SIGTERM).
        task_status: reports the bound URLs.

    Raises:
        OSError: the address could not be bound (port in use, say).
    """
    hypercorn_config = hypercorn.config.Config()
    hypercorn_config.bind = [f"{config.host}:{config.port}"]
    hypercorn_config.graceful_timeout = config.graceful_timeout
    hypercorn_config.accesslog = None
    async with open_services(config, store) as services:
        app = create_app(services)
        await hypercorn.trio.serve(
            app,
            hypercorn_config,
            shutdown_trigger=shutdown_trigger or wait_for_shutdown_signal,
            task_status=task_status,
        )
    logger.info("server stopped; buffer flushed")
