"""A real server on a loopback port, run by ``trio.run`` in a thread of its own.

For tests that are plain sync functions (the browser tests: Playwright's sync API runs its own
event loop and must not block trio's), where the ``progress_server`` fixture, which needs the
test's trio nursery, cannot be used.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import trio
from progress_sync import MemoryStore
from progress_sync.server import ServerConfig, serve

START_TIMEOUT = 10.0
"""Seconds the server gets to start listening."""


@contextmanager
def serve_in_thread(config: ServerConfig) -> Iterator[str]:
    """Serve ``config`` in a thread; yields the base URL (``http://127.0.0.1:PORT``).

    On exit the server shuts down (its jobs end ``cancelled``) and the thread is joined; an
    error raised in the server is raised here.

    Raises:
        RuntimeError: the server did not start listening within ``START_TIMEOUT`` seconds.
    """
    started = threading.Event()
    urls: list[str] = []
    errors: list[BaseException] = []
    token: list[trio.lowlevel.TrioToken] = []
    stop_holder: list[trio.Event] = []

    async def main() -> None:
        stop = trio.Event()
        stop_holder.append(stop)
        token.append(trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                partial(serve, config, store=MemoryStore(), shutdown_trigger=stop.wait)
            )
            urls.extend(bound)
            started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the test thread, which raises it
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="progress-sync test server", daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT):
        raise RuntimeError(f"the test server did not start within {START_TIMEOUT:g} s")
    if errors:
        raise errors[0]
    try:
        yield urls[0]
    finally:
        trio.from_thread.run_sync(stop_holder[0].set, trio_token=token[0])
        thread.join(START_TIMEOUT + config.graceful_timeout)
        if errors:
            raise errors[0]
