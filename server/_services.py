"""The services the app serves from, and the opening of the pipeline under them, in one place.

``open_services`` opens, in order: the export store (unless one is given), the update sink
(buffer or direct sync), the job runner, the lease reaper; ``Services`` holds them for
``create_app`` (``_app``), whose routes read them. ``serve`` (``_serve``) runs Hypercorn over
the app with the services open around it. Nothing here imports the app or the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from progress_sync import (
    DEMO_KIND,
    ExportStore,
    JobRunner,
    UpdateSink,
    open_export_store,
    open_job_runner,
    open_lease_reaper,
    open_update_sink,
)
from quart import current_app

from ._config import ServerConfig
from ._metrics import Metrics
from .sse._admission import StreamHub


@dataclass(frozen=True)
class Services:
    """What the app serves from; opened and owned by ``serve`` (or by a test).

    Attributes:
        config: the server's settings.
        store: the export store.
        sink: where reports go (the update buffer, or direct sync).
        runner: the job runner.
        streams: the server's open SSE streams (admission, shutdown).
        metrics: the server's Prometheus metrics.
    """

    config: ServerConfig
    store: ExportStore
    sink: UpdateSink
    runner: JobRunner
    streams: StreamHub = field(default_factory=StreamHub)
    metrics: Metrics = field(default_factory=Metrics)


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
    metrics = Metrics()
    streams = StreamHub()
    async with (
        open_update_sink(
            store,
            config.sync_mode,
            flush_interval=config.flush_interval,
            capacity=config.buffer_capacity,
            on_flush=metrics.flush_duration.observe,
        ) as sink,
        open_job_runner(
            store,
            sink,
            kinds={"demo": DEMO_KIND},
            max_concurrent=config.max_concurrent_jobs,
            max_queued=config.max_queued_jobs,
        ) as runner,
        open_lease_reaper(store),
    ):
        metrics.watch(store, sink, streams)
        yield Services(
            config=config,
            store=store,
            sink=sink,
            runner=runner,
            streams=streams,
            metrics=metrics,
        )


SERVICES_KEY = "progress_sync.services"
"""Where ``create_app`` keeps the app's ``Services`` (``app.extensions``)."""


def current_services() -> Services:
    """The services of the app handling the current request (module-level routes read them)."""
    return cast(Services, current_app.extensions[SERVICES_KEY])
