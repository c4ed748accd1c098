"""Stream lifecycle in virtual time through ASGI: frozen clients, admission, shutdown.

Rules: autojump clock only; a "frozen" client is one that stops reading, so the app's writes
block once the request's small body buffer is full (as a full socket would block them).
"""

from __future__ import annotations

import itertools
import json

import pytest
import trio
import trio.testing
from progress_sync import Subscription
from progress_sync.server._serve import drain
from progress_sync.server.testing import open_in_process_server, parse_sse

STREAM = "/api/jobs/{}/progress/stream"


async def report_forever(sink, job_id: str, every: float = 0.01) -> None:
    percent = 0.0
    while True:
        percent = (percent + 0.01) % 100
        sink.report_nowait(job_id, percent, "work", "x" * 500)
        await trio.sleep(every)


def subscriptions_of(store, job_id: str) -> set[Subscription]:
    # The in-memory store's subscriber set: the only way to look at a frozen client's slot.
    return store._jobs[job_id].subscribers


async def test_a_frozen_client_is_dropped_after_the_send_timeout(autojump_clock, nursery):
    async with open_in_process_server(send_timeout=7.0, flush_interval=0.1) as server:
        await server.store.register("job-1")
        nursery.start_soon(report_forever, server.sink, "job-1")
        async with server.request(STREAM.format("job-1"), buffer=2) as frozen:
            await frozen.started.wait()
            # Never read: the third write blocks.
            await trio.testing.wait_all_tasks_blocked()
            blocked_at = trio.current_time()
            await frozen.ended.wait()
            assert trio.current_time() - blocked_at == pytest.approx(7.0, abs=0.2)
            assert not frozen.complete
        assert server.store.statistics().subscribers == 0
        assert server.services.streams.admitted == 0
        dropped = server.services.metrics.clients_dropped.labels(reason="send_timeout")
        assert dropped._value.get() == 1


@pytest.mark.slow
async def test_a_frozen_client_delays_no_one_and_holds_one_snapshot(autojump_clock, nursery):
    async with open_in_process_server(send_timeout=30.0, flush_interval=0.1) as server:
        await server.store.register("job-1")
        nursery.start_soon(report_forever, server.sink, "job-1")
        async with (
            server.request(STREAM.format("job-1"), buffer=1) as frozen,
            server.request(STREAM.format("job-1")) as reader,
        ):
            await frozen.started.wait()
            flushes_before = server.sink.statistics().flushes
            received = []
            started = trio.current_time()
            while trio.current_time() - started < 20.0:
                event = await reader.next_event()
                received.append((trio.current_time(), json.loads(event.data)["seq"]))
            # The reader got every flush's state, one flush interval apart, all along.
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(received)]
            assert max(gaps) <= 0.1 + 1e-6
            assert server.sink.statistics().flushes - flushes_before >= 190
            # The frozen client's subscription keeps the latest snapshot only.
            slots = subscriptions_of(server.store, "job-1")
            frozen_slot = min(slots, key=lambda s: s.received)
            assert frozen_slot.received <= 3
            assert frozen_slot.conflated >= 190
            assert frozen_slot.latest.seq == received[-1][1]
            assert not frozen.ended.is_set()


async def test_max_subscribers_answers_503_with_retry_after_and_frees_places(autojump_clock):
    async with open_in_process_server(max_subscribers=2, retry_ms=2500) as server:
        await server.store.register("job-1")
        async with (
            server.request(STREAM.format("job-1")) as first,
            server.request(STREAM.format("job-1")) as second,
        ):
            await first.next_event()
            await second.next_event()
            async with server.request(STREAM.format("job-1")) as third:
                body = await third.read_all()
            assert third.status == 503
            assert third.headers["retry-after"] == "3"
            assert json.loads(body) == {
                "error": "too many subscribers",
                "code": "too_many_subscribers",
                "detail": "this server holds its maximum of 2 open streams; retry in 3 s "
                "(or raise --max-subscribers)",
                "field": None,
            }
            # Other jobs and routes are unaffected.
            response = await server.client().get("/api/jobs/job-1")
            assert response.status_code == 200
            first.disconnect()
            await first.ended.wait()
            async with server.request(STREAM.format("job-1")) as fourth:
                await fourth.next_event()
                assert fourth.status == 200


async def test_a_client_leaving_before_its_stream_starts_leaves_no_admission(autojump_clock):
    async with open_in_process_server(max_subscribers=1) as server:
        await server.store.register("job-1")
        for _ in range(20):
            async with server.request(STREAM.format("job-1")) as request:
                pass  # leaves at once: maybe before, maybe after the body started
            await request.ended.wait()
        assert server.services.streams.admitted == 0
        assert server.store.statistics().subscribers == 0


async def test_a_client_leaving_while_waiting_frees_everything_at_once(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        baseline = len(trio.lowlevel.current_task().parent_nursery.child_tasks)
        async with server.request(STREAM.format("job-1")) as waiting:
            await waiting.next_event()
            async with server.request(STREAM.format("unregistered")) as unregistered:
                await unregistered.receive_chunk()
                await trio.testing.wait_all_tasks_blocked()
                assert server.store.statistics().subscribers == 1
                assert server.store._registration_waiters
                left_at = trio.current_time()
        await waiting.ended.wait()
        await unregistered.ended.wait()
        assert trio.current_time() == left_at
        assert server.store.statistics().subscribers == 0
        assert not server.store._registration_waiters
        assert server.services.streams.running == 0
        assert len(trio.lowlevel.current_task().parent_nursery.child_tasks) == baseline


async def test_shutdown_ends_streams_with_their_pending_state_then_reconnect(autojump_clock):
    spread = 5000
    async with open_in_process_server(
        flush_interval=60.0, retry_ms=2000, shutdown_retry_spread_ms=spread
    ) as server:
        await server.store.register("external")
        requests = []
        async with trio.open_nursery() as nursery:
            for _ in range(12):
                request = await nursery.start(_open_and_hold, server, "external")
                requests.append(request)
            # Reported just before the signal, still in the buffer (flushes are 60 s apart).
            server.sink.report_nowait("external", 42.0, "almost")
            await drain(server.services)
        retries = set()
        for request in requests:
            events = request.final_events
            assert [e.event for e in events] == ["job-progress", "job-progress", "reconnect"]
            assert json.loads(events[1].data)["percent"] == 42.0
            reconnect = events[-1]
            assert 2000 <= reconnect.retry <= 2000 + spread
            assert json.loads(reconnect.data) == {
                "reason": "server shutting down",
                "jobId": "external",
                "retryMs": reconnect.retry,
            }
            retries.add(reconnect.retry)
            assert request.complete
        assert len(retries) > 1, "every client was told to come back at the same moment"


async def _open_and_hold(server, job_id, *, task_status=trio.TASK_STATUS_IGNORED):
    async with server.request(STREAM.format(job_id)) as request:
        await request.next_event()
        task_status.started(request)
        request.final_events = parse_sse(await request.read_all())


async def test_shutdown_gives_streams_of_this_servers_jobs_their_terminal_event(autojump_clock):
    async with open_in_process_server() as server:
        async with server.client() as client:
            created = await client.post(
                "/api/jobs", json={"kind": "demo", "params": {"durationS": 600}}
            )
        job_id = (await created.get_json())["jobId"]
        async with trio.open_nursery() as nursery:
            request = await nursery.start(_open_and_hold, server, job_id)
            await trio.sleep(3.0)
            await drain(server.services)
        names = [e.event for e in request.final_events]
        assert names[-1] == "job-cancelled"
        assert "reconnect" not in names
        assert request.complete


async def test_during_shutdown_new_streams_get_503_and_health_says_draining(autojump_clock):
    async with open_in_process_server(retry_ms=1000, shutdown_retry_spread_ms=4000) as server:
        await server.store.register("job-1")
        await drain(server.services)
        async with server.request(STREAM.format("job-1")) as request:
            body = await request.read_all()
        assert request.status == 503
        assert 1 <= int(request.headers["retry-after"]) <= 5
        assert json.loads(body)["error"] == "shutting down"
        health = await server.client().get("/healthz")
        assert health.status_code == 503
        assert (await health.get_json())["status"] == "draining"
