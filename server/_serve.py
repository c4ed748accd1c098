"""Run the app under Hypercorn's trio worker, with the services it needs open around it.

Shutdown (SIGTERM, SIGINT, or ``shutdown_trigger`` returning), within ``graceful_timeout``:

1. Hypercorn stops accepting: its listener is closed, so new connections are refused; idle
   keep-alive connections are closed; ``/healthz`` answers 503 ``draining`` and new stream
   requests 503 with a spread ``Retry-After``.
2. Jobs this server runs are cancelled; each one's ``cancelled`` state is stored, so streams
   following it get their terminal event.
3. The update buffer is flushed: no progress reported before the signal is lost.
4. Every open stream sends what it has pending, then, if its job has not ended, a
   ``reconnect`` event with a ``retry:`` drawn from ``retry_ms`` to ``retry_ms +
   shutdown_retry_spread_ms``, and ends.
5. Hypercorn waits for the connections to close, and cuts those still open when
   ``graceful_timeout`` has passed since the signal; then the services close (final flush).
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Awaitable, Callable

import hypercorn.config
import trio
from progress_sync import (
    ExportStore,
)

from ._app import create_app
from ._config import ServerConfig
from ._connections import raise_fd_limit
from ._seam import serve_hypercorn
from ._services import Services, open_services

logger = logging.getLogger(__name__)


def bind_error(group: BaseExceptionGroup) -> OSError | None:
    """The error that kept the server from binding its address, if ``group`` holds one.

    Hypercorn binds inside its nurseries, so such an error arrives inside an ExceptionGroup:
    an unknown host (``socket.gaierror``), an address not on this machine, or no permission.
    """
    found: BaseException | None = group.subgroup(
        lambda exc: (
            isinstance(exc, socket.gaierror)
            or (isinstance(exc, OSError) and exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES))
        )
    )
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    assert found is None or isinstance(found, OSError)  # gaierror is an OSError
    return found


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


async def drain(services: Services) -> None:
    """Steps 2-4 of a shutdown: cancel this server's jobs, flush, end every open stream.

    Takes at most ``graceful_timeout`` seconds; what is not done by then is logged (and the
    services' own exit still cancels the jobs and flushes the buffer).
    """
    config = services.config
    services.streams.close()
    with trio.move_on_after(config.graceful_timeout) as scope:
        await services.runner.cancel_all()
        await services.sink.flush()
    services.streams.shutdown()
    if scope.cancelled_caught:
        logger.error(
            "shutdown: jobs were not all cancelled and flushed within %g s",
            config.graceful_timeout,
        )
    else:
        logger.info(
            "shutdown: jobs cancelled, buffer flushed, %d open streams told to reconnect or end",
            services.streams.running,
        )


def set_send_timeout(sockets: hypercorn.config.Sockets, send_timeout: float) -> None:
    """Set ``TCP_USER_TIMEOUT`` to ``send_timeout`` on listening sockets (Linux; no-op elsewhere).

    Accepted connections inherit it from the listener: the kernel then aborts a connection
    whose peer has not taken data for ``send_timeout`` seconds (zero-window probes included).
    That is what unblocks Hypercorn's HTTP/1.1 socket write, which Hypercorn shields from
    cancellation, when a client stops reading (see ``ConnectionGuard``).
    """
    timeout_ms = max(1, round(send_timeout * 1000))
    for sock in [*sockets.insecure_sockets, *sockets.secure_sockets]:
        if hasattr(socket, "TCP_USER_TIMEOUT") and sock.family in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)


def listening_sockets(
    config: ServerConfig, settings: hypercorn.config.Config
) -> hypercorn.config.Sockets:
    """Bind and listen on ``config.host:config.port``, with the send timeout set in the kernel.

    Raises:
        OSError: the address could not be bound (port in use, say).
    """
    sockets = settings.create_sockets()
    set_send_timeout(sockets, config.send_timeout)
    for sock in [*sockets.insecure_sockets, *sockets.secure_sockets]:
        sock.listen(settings.backlog)
    return sockets


async def serve_services(
    services: Services,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    sockets: hypercorn.config.Sockets | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app over ``services`` until ``shutdown_trigger`` returns, then drain and stop.

    Like ``serve``, for callers (tests, embedding code) that open the services themselves.

    Raises:
        OSError: the address could not be bound (port in use, say), or the file-descriptor
            limit is too low for ``config.connection_limit`` connections.
    """
    config = services.config
    raise_fd_limit(config.connection_limit)
    settings = hypercorn_config(config)
    if sockets is None:
        sockets = listening_sockets(config, settings)
    else:
        set_send_timeout(sockets, config.send_timeout)
    app = create_app(services)
    trigger = shutdown_trigger or wait_for_shutdown_signal
    stop_accepting = trio.Event()
    stopped_accepting = trio.Event()

    async def drain_when_triggered() -> None:
        await trigger()
        stop_accepting.set()
        # Streams end only once Hypercorn knows it is stopping: an HTTP/2 connection whose last
        # stream ends then gets its GOAWAY (Hypercorn sends it only while terminating).
        await stopped_accepting.wait()
        await drain(services)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain_when_triggered)
        # Hypercorn's worker loop with a connection limit; each worker process serves on the
        # sockets its parent shares (as hypercorn.run does for its workers).
        await serve_hypercorn(
            app,
            settings,
            sockets=sockets,
            shutdown_trigger=stop_accepting.wait,
            stopped_accepting=stopped_accepting,
            max_connections=config.connection_limit,
            metrics=services.metrics,
            task_status=task_status,
        )
        if not stop_accepting.is_set():
            nursery.cancel_scope.cancel()


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
    once the server accepts connections; with ``port=0`` the OS picks a free port. The shutdown
    is described in this module's docstring.

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
    async with open_services(config, store) as services:
        await serve_services(
            services, shutdown_trigger=shutdown_trigger, sockets=sockets, task_status=task_status
        )
    logger.info("server stopped; buffer flushed")


def hypercorn_config(config: ServerConfig) -> hypercorn.config.Config:
    """The Hypercorn settings of a server with ``config``: bind address, graceful timeout."""
    settings = hypercorn.config.Config()
    settings.bind = [f"{config.host}:{config.port}"]
    settings.graceful_timeout = config.graceful_timeout
    settings.keep_alive_timeout = config.keep_alive_timeout
    settings.accesslog = None
    # Hypercorn's default listen backlog (100) overflows when thousands of browsers reconnect
    # at once (after a deploy, say): the kernel drops their SYNs and resets some of them
    # (bench/_storm.py). As deep as the connection limit; the kernel caps it at
    # net.core.somaxconn.
    settings.backlog = max(1024, config.connection_limit)
    # Hypercorn's own errorlog would add a second stderr handler; log through ours instead.
    settings.errorlog = logging.getLogger("hypercorn.error")
    settings.workers = config.workers
    return settings
