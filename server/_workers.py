"""``progress-sync serve --workers N``: N server processes on one listening socket.

Hypercorn's worker model (``hypercorn.run.run``, ``hypercorn --workers N``): the parent binds
the listening sockets, starts N spawned processes that each accept connections on them, and
on SIGINT/SIGTERM sets a shared event that makes every worker shut down gracefully. Hypercorn's
own runner loads the app from an import path; ours starts each worker with ``serve``, so every
worker opens its own services (store connection, update buffer, job runner) around the app.
The workers share jobs through the store, so several workers need a shared store (Redis).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from multiprocessing.synchronize import Event as EventType
from types import FrameType

import hypercorn.config
import hypercorn.utils
import trio
from progress_sync import StoreUnavailableError

from ._config import ServerConfig
from ._gc import tune_garbage_collector
from ._serve import hypercorn_config, serve, wait_for_shutdown_signal

logger = logging.getLogger(__name__)

WORKER_STOP_GRACE = 15.0
"""Seconds a worker gets, beyond the graceful timeout, to flush and exit before it is killed."""

EXIT_STORE_UNAVAILABLE = 3
"""The exit code of a worker (and of ``run_workers``) whose store could not be reached."""


def run_workers(config: ServerConfig, *, log_level: int = logging.INFO, log_format: str) -> int:
    """Serve with ``config.workers`` processes sharing the listening socket, until SIGINT/SIGTERM.

    Args:
        config: the server's settings; ``config.store`` must be a shared store (Redis), which
            ``ServerConfig`` checks when ``workers`` > 1.
        log_level: the logging level of the workers.
        log_format: the logging format of the workers.

    Returns:
        The exit code: 0 after a clean shutdown, else the first failed worker's code
        (``EXIT_STORE_UNAVAILABLE`` when the store could not be reached). When one worker
        stops, the others are stopped too.

    Raises:
        OSError: the address could not be bound (port in use, say).
    """
    settings = hypercorn_config(config)
    sockets = settings.create_sockets()
    try:
        # Listen at once: connections wait in the backlog until a worker accepts them.
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.listen(settings.backlog)
        context = multiprocessing.get_context("spawn")
        shutdown_event = context.Event()
        processes = [
            context.Process(
                target=_worker,
                args=(config, sockets, shutdown_event, log_level, log_format),
                name=f"progress-sync worker {number}",
            )
            for number in range(1, config.workers + 1)
        ]
        # The workers start with SIGINT ignored, as Hypercorn's do: Ctrl-C reaches the whole
        # process group, and the parent alone decides how the workers stop.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for process in processes:
                process.start()
        finally:
            signal.signal(signal.SIGINT, previous)

        def stop(signum: int, frame: FrameType | None) -> None:
            shutdown_event.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        host, port = sockets.insecure_sockets[0].getsockname()[:2]
        logger.info(
            "serving on http://%s:%d with %d workers, store %s",
            host,
            port,
            config.workers,
            config.store,
        )
        multiprocessing.connection.wait([process.sentinel for process in processes])
        shutdown_event.set()
        for process in processes:
            process.join(config.graceful_timeout + WORKER_STOP_GRACE)
        for process in processes:
            if process.is_alive():
                logger.error("%s did not stop in time; killing it", process.name)
                process.kill()
                process.join()
    finally:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
    return next((code for process in processes if (code := process.exitcode)), 0)


def _worker(
    config: ServerConfig,
    sockets: hypercorn.config.Sockets,
    shutdown_event: EventType,
    log_level: int,
    log_format: str,
) -> None:
    logging.basicConfig(level=log_level, format=log_format)
    backlog = hypercorn_config(config).backlog
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(backlog)
    tune_garbage_collector()
    try:
        trio.run(
            partial(
                serve,
                config,
                sockets=sockets,
                shutdown_trigger=partial(_until_shutdown, shutdown_event),
            )
        )
    except StoreUnavailableError as exc:
        logger.error("worker stopped: %s", exc)
        raise SystemExit(EXIT_STORE_UNAVAILABLE) from exc


async def _until_shutdown(shutdown_event: EventType) -> None:
    """Return when the parent sets ``shutdown_event``, or this worker gets SIGINT/SIGTERM."""
    async with trio.open_nursery() as nursery:

        async def first(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(
            first,
            partial(hypercorn.utils.check_multiprocess_shutdown_event, shutdown_event, trio.sleep),
        )
        nursery.start_soon(first, wait_for_shutdown_signal)
