"""The SSE protocol of one job's stream, in virtual time (``autojump_clock``) through ASGI.

Rules: every test here runs on the autojump clock, so heartbeats, timeouts and flushes happen
in virtual seconds; streams are parsed with httpx-sse. The choices tested come from the WHATWG
HTML standard, section 9.2 "Server-sent events".
"""

from __future__ import annotations

import json

import pytest
import trio
from progress_sync.server.testing import open_in_process_server, parse_sse

STREAM = "/api/jobs/{}/progress/stream"


async def test_stream_starts_with_the_configured_retry_field(autojump_clock):
    async with open_in_process_server(retry_ms=3500) as server:
        await server.store.register("job-1")
        async with server.request(STREAM.format("job-1")) as request:
            first = await request.receive_chunk()
            assert first == b"retry: 3500\n\n"
            assert request.status == 200
            event = await request.next_event()
            assert event.retry is None
            assert event.id == "1"


async def test_default_retry_is_2000_ms(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        async with server.request(STREAM.format("job-1")) as request:
            assert await request.receive_chunk() == b"retry: 2000\n\n"


async def test_heartbeat_goes_out_only_after_an_interval_of_silence(autojump_clock):
    async with open_in_process_server(heartbeat_interval=15.0) as server:
        await server.store.register("job-1")
        async with server.request(STREAM.format("job-1")) as request:
            await request.receive_chunk()  # retry
            await request.next_event()  # the current snapshot
            start = trio.current_time()
            assert await request.receive_chunk() == b": heartbeat\n\n"
            assert trio.current_time() - start == pytest.approx(15.0)
            # An event resets the silence: the next heartbeat is 15 s after it, not before.
            await trio.sleep(10.0)
            server.sink.report_nowait("job-1", 10.0, "work")
            event = await request.next_event()
            sent_at = trio.current_time()
            assert json.loads(event.data)["percent"] == 10.0
            assert await request.receive_chunk() == b": heartbeat\n\n"
            assert trio.current_time() - sent_at == pytest.approx(15.0)


async def test_heartbeats_keep_a_stream_alive_while_it_waits_for_registration(autojump_clock):
    async with (
        open_in_process_server(heartbeat_interval=2.0, registration_timeout=5.0) as server,
        server.request(STREAM.format("late")) as request,
    ):
        await request.receive_chunk()
        assert await request.receive_chunk() == b": heartbeat\n\n"
        assert await request.receive_chunk() == b": heartbeat\n\n"
        await server.store.register("late")
        event = await request.next_event()
        assert json.loads(event.data)["jobId"] == "late"


@pytest.mark.parametrize("where", ["header", "query"])
async def test_a_client_is_not_sent_again_the_snapshot_it_has(autojump_clock, where):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        server.sink.report_nowait("job-1", 5.0, "a")
        await server.sink.flush()  # seq 2
        kwargs = (
            {"headers": [("Last-Event-ID", "2")]}
            if where == "header"
            else {"query": {"lastEventId": "2"}}
        )
        async with server.request(STREAM.format("job-1"), **kwargs) as request:
            await request.receive_chunk()  # retry
            with trio.move_on_after(5.0) as waited:
                await request.next_event()
            assert waited.cancelled_caught, "the snapshot the client has was sent again"
            server.sink.report_nowait("job-1", 6.0, "b")
            event = await request.next_event()
            assert event.id == "3"


async def test_the_header_wins_over_the_query_parameter(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        server.sink.report_nowait("job-1", 5.0, "a")
        await server.sink.flush()  # seq 2
        headers = [("Last-Event-ID", "2")]
        async with server.request(
            STREAM.format("job-1"), headers=headers, query={"lastEventId": "1"}
        ) as request:
            await request.receive_chunk()
            with trio.move_on_after(5.0) as waited:
                await request.next_event()
            assert waited.cancelled_caught


async def test_a_client_behind_gets_the_current_snapshot_at_once(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        for percent in (1.0, 2.0, 3.0):
            server.sink.report_nowait("job-1", percent, "a")
            await server.sink.flush()  # seq 2, 3, 4
        started = trio.current_time()
        headers = [("Last-Event-ID", "2")]
        async with server.request(STREAM.format("job-1"), headers=headers) as request:
            event = await request.next_event()
        assert event.id == "4"
        assert json.loads(event.data)["percent"] == 3.0
        assert trio.current_time() == started


@pytest.mark.parametrize("bad_id", ["abc", "-1", "1.0", "99", "2,3", "\u0661", "9" * 40])
async def test_an_unknown_stale_or_malformed_id_gets_the_current_snapshot(autojump_clock, bad_id):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        headers = [("Last-Event-ID", bad_id)]
        async with server.request(STREAM.format("job-1"), headers=headers) as request:
            event = await request.next_event()
        assert request.status == 200
        assert event.id == "1"
        assert event.event == "job-progress"


async def test_a_client_that_saw_the_terminal_event_gets_204(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        terminal = await server.sink.finish("job-1", "completed", result={"ok": True})
        headers = [("Last-Event-ID", str(terminal.seq))]
        async with server.request(STREAM.format("job-1"), headers=headers) as request:
            body = await request.read_all()
        assert request.status == 204
        assert body == b""
        assert server.services.streams.admitted == 0


async def test_a_client_that_did_not_see_the_end_gets_the_terminal_event_and_the_end(
    autojump_clock,
):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        await server.sink.finish("job-1", "failed", error="boom")
        headers = [("Last-Event-ID", "1")]
        async with server.request(STREAM.format("job-1"), headers=headers) as request:
            events = await request.events()
        assert request.complete
        assert [e.event for e in events] == ["job-failed"]
        assert json.loads(events[0].data)["error"] == "boom"


async def test_job_error_has_id_0_and_a_reconnect_with_it_gets_204(autojump_clock):
    async with open_in_process_server(registration_timeout=3.0) as server:
        async with server.request(STREAM.format("ghost")) as request:
            events = await request.events()
        assert [(e.event, e.id) for e in events] == [("job-error", "0")]
        headers = [("Last-Event-ID", "0")]
        async with server.request(STREAM.format("ghost"), headers=headers) as again:
            await again.read_all()
        assert again.status == 204
        # Once the job exists, id 0 means "nothing seen": the stream starts from the job.
        await server.store.register("ghost")
        async with server.request(STREAM.format("ghost"), headers=headers) as third:
            event = await third.next_event()
        assert event.id == "1"


async def test_no_producer_text_can_break_the_framing(autojump_clock):
    # (A lone surrogate such as \ud800 is refused when reported: test_api_errors.py.)
    hostile = "a\nb\r\nc\rd\n\nid: 999\nevent: job-completed\ndata: x\u2028\u0000\U0001f600:"
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        server.sink.report_nowait("job-1", 1.0, hostile[:100], hostile)
        await server.sink.flush()
        await server.sink.finish("job-1", "completed")
        async with server.request(STREAM.format("job-1")) as request:
            body = await request.read_all()
        events = parse_sse(body)
        assert [e.event for e in events] == ["job-completed"]
        assert events[0].id == "3"
        data = json.loads(events[0].data)
        assert data["message"] == hostile
        assert data["stage"] == hostile[:100]
        body.decode("utf-8")  # the stream is valid UTF-8 even with a lone surrogate


async def test_stream_headers_forbid_caching_and_transformation(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        headers = [("Accept-Encoding", "gzip, deflate, br")]
        async with server.request(STREAM.format("job-1"), headers=headers) as request:
            await request.receive_chunk()
        assert request.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert request.headers["cache-control"] == "no-cache, no-transform"
        assert request.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in request.headers


async def test_a_bad_job_id_in_the_stream_path_is_a_400_naming_jobId(autojump_clock):
    async with open_in_process_server() as server:
        async with server.request(STREAM.format("bad%20id")) as request:
            body = await request.read_all()
        assert request.status == 400
        assert json.loads(body)["field"] == "jobId"
