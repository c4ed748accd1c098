"""The test kit's server half (``progress_sync.server.testing``): the app in process and on a
real server,
SSE streams parsed by httpx-sse, and the slow or frozen subscriber.

In-process tests (``progress_client``) run in virtual time (``autojump_clock``); tests on a
real server (``progress_server``) use the real clock and keep their jobs short.
"""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest
import trio
import trio.testing
from httpx_sse import ServerSentEvent, SSEError
from progress_sync import JobStatus, MemoryStore, WaitTimeoutError
from progress_sync.server import ServerConfig
from progress_sync.server.testing import (
    STREAM_PATH,
    TERMINAL_EVENTS,
    ProgressServer,
    StreamEvent,
    assert_stream_well_formed,
    collect_events,
    open_event_stream,
    open_slow_sse_client,
    require_real_clock,
    start_progress_server,
)


async def start_demo(client, **params) -> str:
    """Start a demo job through a Quart test client; return its id."""
    response = await client.post("/api/jobs", json={"kind": "demo", "params": params})
    assert response.status_code == 201, await response.get_data()
    return (await response.get_json())["jobId"]


# --- in process, in virtual time ---


async def test_a_minute_long_job_streams_to_completion_in_virtual_time(
    progress_client, autojump_clock
):
    real_start, virtual_start = time.perf_counter(), trio.current_time()
    job_id = await start_demo(progress_client, durationS=60, updatesPerS=5)
    events = await collect_events(progress_client, job_id, timeout=120)
    final = assert_stream_well_formed(events)
    assert final.event == "job-completed"
    assert final.status == "completed"
    assert final.payload["result"]["output"] == f"{job_id}.mp4"
    assert trio.current_time() - virtual_start == pytest.approx(60, abs=1)
    assert time.perf_counter() - real_start < 30


async def test_the_stream_parses_fields_and_keeps_retry(progress_client, autojump_clock):
    job_id = await start_demo(progress_client, durationS=1)
    async with open_event_stream(progress_client, job_id) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        first = await stream.receive()
        assert stream.retry == 2000
        assert first.event == "job-progress"
        assert first.id == "1"
        assert first.seq == 1
        assert first.payload["jobId"] == job_id
        assert first.status in ("queued", "running")
        assert not first.is_terminal
        rest = [event async for event in stream]
        assert stream.ended
        assert stream.events == [first, *rest]
    with pytest.raises(trio.EndOfChannel, match="the server ended the stream"):
        await stream.receive()


async def test_a_stream_left_early_disconnects_and_leaves_the_store(
    progress_client, progress_store, autojump_clock
):
    job_id = await start_demo(progress_client, durationS=3600)
    async with open_event_stream(progress_client, job_id) as stream:
        await stream.receive()
        assert progress_store.statistics().subscribers == 1
    assert not stream.ended
    assert progress_store.statistics().subscribers == 0


async def test_a_stream_by_path(progress_client, progress_store, progress_buffer, autojump_clock):
    await progress_store.register("external")
    await progress_buffer.finish("external", "cancelled")
    events = await collect_events(progress_client, path=STREAM_PATH.format(job_id="external"))
    assert [event.event for event in events] == ["job-cancelled"]
    assert {"job-completed", "job-failed", "job-cancelled"} == TERMINAL_EVENTS


async def test_a_job_never_registered_ends_with_job_error(progress_client, autojump_clock):
    events = await collect_events(progress_client, "nobody")
    assert [event.event for event in events] == ["job-error"]
    error = events[0]
    assert error.percent is None
    assert error.seq == 0  # id 0: nothing of the job seen (a reconnect with it gets 204)
    assert not error.is_terminal
    assert error.payload["jobId"] == "nobody"
    with pytest.raises(AssertionError, match="expected exactly one terminal record, got 0"):
        assert_stream_well_formed(events)


async def test_a_bad_job_id_raises_http_status_error_with_the_body(progress_client):
    with pytest.raises(httpx.HTTPStatusError, match="Client error '400") as caught:
        async with open_event_stream(progress_client, "bad!id"):
            pass  # pragma: no cover - the stream does not open
    assert caught.value.response.json()["field"] == "jobId"


async def test_a_response_that_is_no_event_stream_raises_sse_error(progress_client):
    async with open_event_stream(progress_client, path="/healthz") as stream:
        with pytest.raises(SSEError, match="Content-Type to contain 'text/event-stream'"):
            await stream.receive()


@pytest.mark.parametrize(
    ("job_id", "path"), [(None, None), ("job", "/api/jobs/job/progress/stream")]
)
async def test_a_stream_needs_a_job_id_or_a_path(progress_client, job_id, path):
    with pytest.raises(ValueError, match="with a job_id or with a path, not both or neither"):
        async with open_event_stream(progress_client, job_id, path=path):
            pass  # pragma: no cover - refused before opening


async def test_collect_events_times_out_in_virtual_time_with_what_it_read(
    progress_client, progress_store, progress_buffer, autojump_clock
):
    await progress_store.register("stuck")
    progress_buffer.report_nowait("stuck", percent=12.5, stage="s")
    with pytest.raises(
        WaitTimeoutError,
        match=r"the stream /api/jobs/stuck/progress/stream did not end within 30 s; "
        r"last event: job-progress .*\"percent\":12.5",
    ) as caught:
        await collect_events(progress_client, "stuck", timeout=30)
    assert [event.percent for event in caught.value.received] == [0.0, 12.5]


@pytest.mark.parametrize(
    ("bad_timeout", "message"),
    [(0, "positive number of seconds, not 0"), (float("inf"), "timeout must be finite")],
)
async def test_collect_events_refuses_a_bad_timeout(progress_client, bad_timeout, message):
    with pytest.raises(ValueError, match=message):
        await collect_events(progress_client, "job", timeout=bad_timeout)


def test_stream_event_without_json_data_has_no_payload():
    event = StreamEvent.from_sse(ServerSentEvent(event="note", data="not json", id="x7"))
    assert event.payload is None
    assert event.percent is None
    assert event.status is None
    assert event.seq is None
    assert StreamEvent.from_sse(ServerSentEvent(data='{"percent": true}')).percent is None


# --- the slow or frozen subscriber ---


async def test_a_frozen_client_gets_the_latest_state_not_the_backlog(
    progress_client, progress_store, autojump_clock
):
    job_id = await start_demo(progress_client, durationS=30, updatesPerS=20)
    async with open_slow_sse_client(progress_client, job_id, frozen=True) as slow:
        await wait_terminal(progress_store, job_id)
        assert slow.frozen
        assert slow.events == []
        final = await progress_store.get(job_id)
        slow.thaw()
        events = await slow.wait_finished()
    assert_stream_well_formed(events)
    assert events[-1].seq == final.seq
    # ~600 snapshots were made; the client gets what was queued before backpressure (the
    # test connection holds 10 chunks) and then only the latest state: conflation.
    assert final.seq > 500
    assert len(events) < 20


async def test_a_slow_client_reads_at_its_pace_and_skips_to_the_latest(
    progress_client, progress_store, autojump_clock
):
    job_id = await start_demo(progress_client, durationS=10, updatesPerS=50)
    started = trio.current_time()
    async with open_slow_sse_client(progress_client, job_id, read_interval=1.0) as slow:
        events = await slow.wait_finished(timeout=60)
    final = await progress_store.get(job_id)
    assert_stream_well_formed(events)
    assert len(events) < final.seq / 5
    # One event per second of virtual time: the client set the pace.
    assert trio.current_time() - started >= len(events) - 1


async def test_a_client_can_freeze_and_thaw_again(
    progress_client, progress_store, progress_buffer, autojump_clock
):
    await progress_store.register("job")
    async with open_slow_sse_client(progress_client, "job") as slow:
        await trio.testing.wait_all_tasks_blocked()
        assert [event.percent for event in slow.events] == [0.0]
        slow.freeze()
        slow.freeze()
        for percent in (10.0, 20.0, 30.0):
            progress_buffer.report_nowait("job", percent=percent, stage="s")
            await trio.sleep(1)
        assert [event.percent for event in slow.events] == [0.0, 10.0]
        with pytest.raises(WaitTimeoutError, match=r"did not end within 5 s \(frozen; 2 events"):
            await slow.wait_finished(timeout=5)
        await progress_buffer.finish("job", "completed")
        slow.thaw()
        events = await slow.wait_finished()
    assert [event.percent for event in events][-1] == 100.0
    assert_stream_well_formed(events)


async def test_a_slow_client_that_has_not_finished_says_how_it_reads(
    progress_client, progress_store, autojump_clock
):
    await progress_store.register("job")
    async with open_slow_sse_client(progress_client, "job", read_interval=2) as slow:
        with pytest.raises(WaitTimeoutError, match=r"\(reading every 2 s; 1 events read\)"):
            await slow.wait_finished(timeout=1)
        with pytest.raises(ValueError, match="timeout must be finite"):
            await slow.wait_finished(timeout=float("inf"))


@pytest.mark.parametrize("read_interval", [-1, float("inf"), True, "1"])
async def test_a_slow_client_refuses_a_bad_read_interval(progress_client, read_interval):
    with pytest.raises(ValueError, match="read_interval must be a finite number of seconds >= 0"):
        async with open_slow_sse_client(progress_client, "job", read_interval=read_interval):
            pass  # pragma: no cover - refused before opening


async def wait_terminal(store, job_id):
    """Wait (in virtual time) until the job has ended."""
    from progress_sync.testing import wait_for_snapshot

    return await wait_for_snapshot(store, job_id, lambda s: s.is_terminal, timeout=600)


# --- services ---


async def test_progress_services_run_over_progress_store(progress_services, progress_store):
    assert progress_services.store is progress_store
    assert "demo" in progress_services.runner.kinds


async def test_progress_client_runs_your_job_kinds(
    progress_client, progress_services, progress_store, autojump_clock
):
    from progress_sync import JobKind

    async def resize(reporter, params):
        for step in range(1, 5):
            await trio.sleep(10)
            reporter.report(25.0 * step, "resize")
        return {"images": params["images"]}

    progress_services.runner.kinds["resize"] = JobKind("resize", resize, dict)
    response = await progress_client.post(
        "/api/jobs", json={"kind": "resize", "params": {"images": 3}}
    )
    job_id = (await response.get_json())["jobId"]
    # 40 s of job: more than the default 10 s timeout, which is virtual time too.
    with pytest.raises(WaitTimeoutError, match="did not end within 10 s"):
        await collect_events(progress_client, job_id)
    final = assert_stream_well_formed(await collect_events(progress_client, job_id, timeout=60))
    assert final.payload["result"] == {"images": 3}
    assert (await progress_store.get(job_id)).status is JobStatus.COMPLETED


# --- on a real server, on the real clock ---


@pytest.mark.slow
async def test_progress_server_streams_over_real_http(progress_server, progress_server_url):
    assert progress_server_url == progress_server.base_url
    assert progress_server_url.startswith("http://127.0.0.1:")
    async with progress_server.client() as client:
        created = await client.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.3, "updatesPerS": 50}}
        )
        events = await collect_events(client, created.json()["jobId"])
    assert assert_stream_well_formed(events).event == "job-completed"


async def test_a_bad_job_id_over_real_http_raises_http_status_error(progress_server):
    async with progress_server.client() as client:
        with pytest.raises(httpx.HTTPStatusError, match="Client error '400") as caught:
            async with open_event_stream(client, "bad!id"):
                pass  # pragma: no cover - the stream does not open
    assert caught.value.response.json()["field"] == "jobId"


async def test_a_stream_left_early_over_real_http_closes_cleanly(progress_server):
    # Leaving early closes the connection and runs the parser to its end: no async generator
    # is left to the garbage collector (its ResourceWarning would fail this suite).
    async with progress_server.client() as client:
        created = await client.post("/api/jobs", json={"kind": "demo", "params": {"durationS": 60}})
        async with open_event_stream(client, created.json()["jobId"]) as stream:
            assert (await stream.receive()).seq == 1
        assert not stream.ended
        await stream.aclose()
        response = await client.post(f"/api/jobs/{created.json()['jobId']}/cancel")
        assert response.status_code == 202


@pytest.mark.slow
async def test_a_frozen_client_over_real_http_reads_once_thawed(progress_server):
    async with progress_server.client() as client:
        created = await client.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.3, "updatesPerS": 50}}
        )
        job_id = created.json()["jobId"]
        async with open_slow_sse_client(client, job_id, frozen=True) as slow:
            final = await wait_terminal(progress_server.store, job_id)
            assert slow.events == []
            slow.thaw()
            events = await slow.wait_finished()
    assert assert_stream_well_formed(events).seq == final.seq


@pytest.mark.slow
async def test_two_servers_over_one_store_and_a_clean_stop(nursery):
    store = MemoryStore()
    first = await start_progress_server(nursery, store=store)
    second = await start_progress_server(nursery, store=store)
    assert first.base_url != second.base_url
    assert isinstance(first, ProgressServer)
    async with first.client() as one, second.client() as two:
        created = await one.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.2, "updatesPerS": 20}}
        )
        events = await collect_events(two, created.json()["jobId"])
    assert assert_stream_well_formed(events).event == "job-completed"
    for server in (first, second):
        await server.aclose()
        assert server.stopped.is_set()
    async with first.client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")


@pytest.mark.slow
async def test_two_servers_over_the_redis_store_their_config_names(
    nursery, progress_server_config, redis_url, redis_prefix
):
    config = replace(progress_server_config, store=redis_url, store_prefix=redis_prefix)
    first = await start_progress_server(nursery, config)
    second = await start_progress_server(nursery, config)
    assert first.store is None
    async with first.client() as one, second.client() as two:
        created = await one.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.2, "updatesPerS": 20}}
        )
        events = await collect_events(two, created.json()["jobId"])
    assert assert_stream_well_formed(events).event == "job-completed"
    for server in (first, second):
        await server.aclose()


async def test_a_real_server_refuses_the_autojump_clock(autojump_clock):
    with pytest.raises(pytest.fail.Exception, match="the autojump clock would jump virtual time"):
        require_real_clock("progress_server")
    async with trio.open_nursery() as nursery:
        with pytest.raises(pytest.fail.Exception, match="start_progress_server runs a real"):
            await start_progress_server(nursery, ServerConfig(port=0))


@pytest.fixture
def thresholded_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.1)


async def test_a_real_server_accepts_an_autojump_clock_with_a_threshold(thresholded_clock):
    require_real_clock("progress_server")
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)


# --- errors of the in-process transport ---


class BareApp:
    """An ASGI app with the one setting Quart's test helpers read, and no response."""

    def __init__(self, error: Exception | None = None) -> None:
        self.config = {"SERVER_NAME": None}
        self.error = error

    async def __call__(self, scope, receive, send):
        await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error


async def test_an_app_that_never_responds_is_reported():
    client = SimpleNamespace(app=BareApp())
    with pytest.raises(RuntimeError, match="the app returned without starting a response to GET"):
        async with open_event_stream(client, "job"):
            pass  # pragma: no cover - the stream does not open


async def test_an_app_that_crashes_is_not_hidden():
    client = SimpleNamespace(app=BareApp(OSError("disk on fire")))
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="disk on fire")):
        async with open_event_stream(client, "job"):
            pass  # pragma: no cover - the stream does not open


async def test_a_slow_client_whose_reading_fails_raises_when_it_is_left(progress_client):
    with pytest.RaisesGroup(pytest.RaisesExc(SSEError, match="text/event-stream")):
        async with open_slow_sse_client(progress_client, path="/healthz"):
            await trio.sleep_forever()


async def test_a_stream_left_before_reading_closes_without_parsing(progress_client):
    async with open_event_stream(progress_client, path="/healthz") as stream:
        assert stream.response.status_code == 200
    assert stream.events == []
