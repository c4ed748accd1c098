"""``GET /api/progress/stream?jobIds=...``: several jobs on one connection, in virtual time."""

from __future__ import annotations

import json

import pytest
import trio
from progress_sync.server.testing import open_in_process_server

MULTI = "/api/progress/stream"


async def test_events_of_every_job_with_one_resumable_id_until_all_end(autojump_clock):
    async with open_in_process_server() as server:
        for job_id in ("a", "b", "c"):
            await server.store.register(job_id)
        async with server.request(MULTI, query={"jobIds": "a,b,c"}) as request:
            first = [await request.next_event() for _ in range(3)]
            assert [json.loads(e.data)["jobId"] for e in first] == ["a", "b", "c"]
            assert [e.id for e in first] == ["1,0,0", "1,1,0", "1,1,1"]
            server.sink.report_nowait("b", 50.0, "half")
            event = await request.next_event()
            assert (event.event, event.id) == ("job-progress", "1,2,1")
            await server.sink.finish("a", "completed")
            await server.sink.finish("c", "cancelled")
            await server.sink.finish("b", "failed", error="no")
            events = await request.events()
        assert request.complete
        ends = [(e.event, json.loads(e.data)["jobId"]) for e in events[-3:]]
        assert sorted(ends) == [
            ("job-cancelled", "c"),
            ("job-completed", "a"),
            ("job-failed", "b"),
        ]
        assert events[-1].id == "2,3,2"


async def test_a_reconnect_resumes_every_job_where_the_client_left_it(autojump_clock):
    async with open_in_process_server() as server:
        for job_id in ("a", "b"):
            await server.store.register(job_id)
        server.sink.report_nowait("b", 10.0, "x")
        await server.sink.flush()  # b: seq 2
        headers = [("Last-Event-ID", "1,1")]
        async with server.request(MULTI, query={"jobIds": "a,b"}, headers=headers) as request:
            event = await request.next_event()
            assert json.loads(event.data)["jobId"] == "b"
            assert event.id == "1,2"
            with trio.move_on_after(5.0) as waited:
                await request.next_event()
            assert waited.cancelled_caught, "job a was sent again"


async def test_a_reconnect_that_saw_every_job_end_gets_204(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("a")
        await server.store.register("b")
        end_a = await server.sink.finish("a", "completed")
        end_b = await server.sink.finish("b", "completed")
        seen = f"{end_a.seq},{end_b.seq}"
        query = {"jobIds": "a,b", "lastEventId": seen}
        async with server.request(MULTI, query=query) as request:
            assert await request.read_all() == b""
        assert request.status == 204
        query["lastEventId"] = f"{end_a.seq},1"
        async with server.request(MULTI, query=query) as request:
            events = await request.events()
        assert [(e.event, e.id) for e in events] == [("job-completed", seen)]


async def test_unknown_jobs_get_a_job_error_each_and_the_others_stream(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("known")
        async with server.request(MULTI, query={"jobIds": "ghost,known"}) as request:
            error = await request.next_event()
            assert (error.event, error.id) == ("job-error", "0,0")
            assert json.loads(error.data)["jobId"] == "ghost"
            event = await request.next_event()
            assert (json.loads(event.data)["jobId"], event.id) == ("known", "0,1")
            await server.sink.finish("known", "completed")
            await request.read_all()
        assert request.complete
        # All ended or unknown, and the client saw it: stop reconnecting.
        query = {"jobIds": "ghost,known", "lastEventId": "0,2"}
        async with server.request(MULTI, query=query) as request:
            await request.read_all()
        assert request.status == 204


async def test_a_quiet_multi_job_stream_sends_heartbeats(autojump_clock):
    async with open_in_process_server(heartbeat_interval=5.0) as server:
        await server.store.register("a")
        async with server.request(MULTI, query={"jobIds": "a"}) as request:
            await request.next_event()
            started = trio.current_time()
            assert await request.receive_chunk() == b": heartbeat\n\n"
            assert trio.current_time() - started == pytest.approx(5.0)


async def test_duplicate_ids_are_followed_once(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("a")
        await server.sink.finish("a", "completed")
        async with server.request(MULTI, query={"jobIds": "a, a,a"}) as request:
            events = await request.events()
        assert [e.id for e in events] == ["2"]


@pytest.mark.parametrize(
    ("job_ids", "reason"),
    [
        ("a,b,c,d", "at most 3 jobs per stream, got 4"),
        ("a,,b", "id 2 ('') must be"),
        ("a,b c", "id 2 ('b c') must be"),
        ("a,-b", "id 2 ('-b') must be"),
    ],
)
async def test_bad_job_ids_get_a_400_naming_jobIds(autojump_clock, job_ids, reason):
    async with open_in_process_server(max_stream_jobs=3) as server:
        for job_id in "abcd":
            await server.store.register(job_id)
        async with server.request(MULTI, query={"jobIds": job_ids}) as request:
            body = json.loads(await request.read_all())
        assert request.status == 400
        assert body["field"] == "jobIds"
        assert reason in body["detail"]
        assert server.store.statistics().subscribers == 0


async def test_missing_jobIds_is_a_400(autojump_clock):
    async with open_in_process_server() as server:
        async with server.request(MULTI) as request:
            body = json.loads(await request.read_all())
        assert request.status == 400
        assert body["field"] == "jobIds"
