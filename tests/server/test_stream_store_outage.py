"""Streams while the store cannot be reached (Redis away), in virtual time through ASGI.

The store here is a ``MemoryStore`` that raises ``StoreUnavailableError`` while ``down``, as
the Redis store does; the real Redis case is in ``test_redis_server.py``.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

import pytest
import trio
from progress_sync import MemoryStore, StoreUnavailableError
from progress_sync.server.sse._framing import STORE_RETRY_INTERVAL
from progress_sync.server.testing import open_in_process_server


class OutageStore(MemoryStore):
    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("the store is away (test)")

    async def get(self, job_id):
        self._check()
        return await super().get(job_id)

    async def wait_registered(self, job_id, timeout):  # noqa: ASYNC109 - the store's API
        self._check()
        return await super().wait_registered(job_id, timeout)

    @asynccontextmanager
    async def subscribe(self, job_id):
        self._check()
        async with super().subscribe(job_id) as subscription:
            yield subscription


@pytest.mark.parametrize(
    ("path", "query"),
    [("/api/jobs/job-1/progress/stream", {}), ("/api/progress/stream", {"jobIds": "job-1"})],
)
async def test_a_stream_keeps_heartbeats_while_the_store_is_away_then_resumes(
    autojump_clock, path, query
):
    store = OutageStore()
    async with open_in_process_server(store=store, heartbeat_interval=15.0) as server:
        await store.register("job-1")
        store.down = True
        # Even a reconnect (whose 204 check reads the store) opens a stream, not a 503 that
        # would make EventSource give up.
        headers = [("Last-Event-ID", "1")]
        async with server.request(path, query=query, headers=headers) as request:
            assert await request.receive_chunk() == b"retry: 2000\n\n"
            assert request.status == 200
            started = trio.current_time()
            for _ in range(3):
                assert await request.receive_chunk() == b": heartbeat\n\n"
            assert trio.current_time() - started == pytest.approx(2 * STORE_RETRY_INTERVAL)
            store.down = False
            server.sink.report_nowait("job-1", 60.0, "back")
            event = await request.next_event()
            assert json.loads(event.data)["percent"] == 60.0
            assert event.id == "2"  # seq 1, which the client had, was not sent again


async def test_a_stream_waiting_for_the_store_is_told_to_reconnect_at_shutdown(autojump_clock):
    from progress_sync.server._serve import drain

    store = OutageStore()
    async with open_in_process_server(store=store) as server:
        await store.register("job-1")
        store.down = True
        async with server.request("/api/jobs/job-1/progress/stream") as request:
            await request.receive_chunk()
            await request.receive_chunk()  # a heartbeat: it is waiting for the store
            await drain(server.services)
            events = await request.events()
        assert [e.event for e in events] == ["reconnect"]
        assert request.complete
