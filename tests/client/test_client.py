"""The progress clients (sync and trio) against a real server, and their batching in virtual time.

Batching on the flush interval is checked in virtual time against an ``httpx.MockTransport``
fake server that records each request; everything else runs against a real server on
loopback with the real clock.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest
import trio
from progress_sync import (
    AuthenticationError,
    InvalidUpdateError,
    JobExistsError,
    JobFinishedError,
    JobNotFoundError,
    ReportingTqdm,
    ServerRejectedError,
    ServerUnavailableError,
    SinkClosedError,
)
from progress_sync.client import ProgressClient, open_progress_client
from progress_sync.server.testing import start_progress_server
from progress_sync.testing import wait_for_snapshot

TOKEN = "client-test-token-123456"


class FakeServer:
    """Answers like the ingest API and records what it was sent, with trio's clock."""

    def __init__(self, answer: dict | None = None, fail_first: int = 0) -> None:
        self.batches: list[tuple[float, list[dict]]] = []
        self.requests: list[tuple[str, object]] = []
        self.answer = answer
        self.fail_first = fail_first

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.url.path, body))
        if self.fail_first:
            self.fail_first -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/api/progress":
            self.batches.append((trio.current_time(), body))
            answer = self.answer or {"accepted": len(body), "errors": [], "unknownJobs": []}
            return httpx.Response(200, json=answer)
        return httpx.Response(200, json={"jobId": "x", "status": "completed"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


# --- batching, in virtual time ---------------------------------------------------------------


async def test_the_async_client_sends_one_coalesced_batch_per_flush_interval(autojump_clock):
    fake = FakeServer()
    async with open_progress_client(
        "http://fake", flush_interval=0.5, transport=fake.transport()
    ) as client:
        for i in range(1, 1001):  # 1,000 reports for 2 jobs over 5 s
            client.report_nowait("a", i / 10, "s")
            client.report_nowait("b", i / 20, "s")
            await trio.sleep(0.005)
        stats = client.statistics()
    assert 9 <= len(fake.batches) <= 11
    gaps = [b[0] - a[0] for a, b in zip(fake.batches, fake.batches[1:], strict=False)]
    assert all(gap >= 0.5 - 1e-9 for gap in gaps)
    assert all(len(lines) <= 2 for _, lines in fake.batches)
    last = {line["jobId"]: line["percent"] for _, lines in fake.batches for line in lines}
    assert last == {"a": 100.0, "b": 50.0}
    assert stats.reports == 2000
    assert stats.coalesced >= 2000 - 2 * len(fake.batches)


async def test_nothing_is_sent_when_nothing_was_reported(autojump_clock):
    fake = FakeServer()
    async with open_progress_client("http://fake", transport=fake.transport()):
        await trio.sleep(10)
    assert fake.requests == []


async def test_finishing_sends_the_jobs_pending_report_first(autojump_clock):
    fake = FakeServer()
    async with open_progress_client(
        "http://fake", flush_interval=60, transport=fake.transport()
    ) as client:
        client.report_nowait("j", 40.0, "upload")
        client.report_nowait("other", 1.0, "x")
        await client.fail("j", "network down")
        assert [path for path, _ in fake.requests] == ["/api/progress", "/api/jobs/j/fail"]
        assert fake.requests[0][1] == [
            {
                "jobId": "j",
                "percent": 40.0,
                "stage": "upload",
                "reportedAt": pytest.approx(time.time(), abs=5),
            }
        ]
    # "other" went out with the final flush when the block closed.
    assert fake.requests[-1][1][0]["jobId"] == "other"


async def test_an_unreachable_server_keeps_the_latest_reports_for_the_next_flush(autojump_clock):
    fake = FakeServer(fail_first=2)
    async with open_progress_client(
        "http://fake", flush_interval=0.5, transport=fake.transport()
    ) as client:
        client.report_nowait("j", 10.0, "s")
        await trio.sleep(0.6)  # first flush: refused
        client.report_nowait("j", 20.0, "s")
        await trio.sleep(0.5)  # second flush: refused
        await trio.sleep(0.5)  # third flush: delivered
        stats = client.statistics()
    assert stats.failed_batches == 2
    assert [lines for _, lines in fake.batches] == [
        [
            {
                "jobId": "j",
                "percent": 20.0,
                "stage": "s",
                "reportedAt": pytest.approx(time.time(), abs=5),
            }
        ]
    ]


async def test_unknown_jobs_in_an_answer_are_counted_and_logged(autojump_clock, caplog):
    fake = FakeServer(answer={"accepted": 0, "errors": [], "unknownJobs": ["ghost"]})
    async with open_progress_client("http://fake", transport=fake.transport()) as client:
        client.report_nowait("ghost", 1.0, "s")
        await trio.sleep(1)
        assert client.statistics().unknown_jobs == ("ghost",)
    assert "does not know job 'ghost'" in caplog.text


async def test_a_refused_batch_raises_out_of_the_block(autojump_clock):
    async def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={"error": "unauthorized", "detail": "needs the producer token", "field": "x"},
        )

    async def report_then_wait() -> None:
        async with open_progress_client(
            "http://fake", transport=httpx.MockTransport(refuse)
        ) as client:
            client.report_nowait("j", 1.0, "s")
            await trio.sleep(10)

    # The flush task's error ends the block, unwrapped from the nursery's exception group.
    with pytest.raises(AuthenticationError, match="401 unauthorized"):
        await report_then_wait()


async def test_reports_after_the_block_raise():
    async with open_progress_client("http://fake", transport=FakeServer().transport()) as client:
        pass
    with pytest.raises(SinkClosedError, match="the progress client is closed"):
        client.report_nowait("j", 1.0, "s")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flush_interval": 0}, "flush_interval must be a positive number"),
        ({"max_batch": 0}, "max_batch must be a whole number >= 1"),
    ],
)
async def test_bad_client_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        async with open_progress_client("http://fake", **kwargs):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match=message):
        ProgressClient("http://fake", **kwargs)


async def test_bad_reports_are_refused_in_the_caller():
    async with open_progress_client("http://fake", transport=FakeServer().transport()) as client:
        with pytest.raises(InvalidUpdateError, match="percent: must be a finite number"):
            client.report_nowait("j", -1.0, "s")
        with pytest.raises(InvalidUpdateError, match="jobId: must be 1-128"):
            client.report_nowait("bad id", 1.0, "s")


# --- against a real server -------------------------------------------------------------------


async def test_an_error_in_the_block_comes_out_as_itself(progress_server):
    async def register_twice() -> None:
        async with open_progress_client(progress_server.base_url) as client:
            await client.register("twice")
            await client.register("twice")

    with pytest.raises(JobExistsError, match="'twice' is registered already"):
        await register_twice()


async def test_the_async_client_registers_reports_and_completes_a_job(progress_server):
    async with open_progress_client(progress_server.base_url, flush_interval=0.05) as client:
        job = await client.register("async-1", stage="setup")
        assert (job.job_id, job.status, job.subscribe_token) == ("async-1", "running", None)
        for i in range(1, 101):
            client.report_nowait(job.job_id, float(i), "work", f"step {i}")
        await wait_for_snapshot(progress_server.store, "async-1", lambda s: s.percent == 100.0)
        final = await client.complete("async-1", {"ok": True})
        assert final["status"] == "completed"
        assert final["result"] == {"ok": True}
        with pytest.raises(JobFinishedError, match="has ended already with status 'completed'"):
            await client.fail("async-1", "too late")
        with pytest.raises(JobExistsError, match="registered already"):
            await client.register("async-1")
        with pytest.raises(JobNotFoundError, match="'nope' is not registered"):
            await client.cancel("nope")
        with pytest.raises(InvalidUpdateError, match=r"status: .*unknown status"):
            await client.register(status="bogus")
        stats = client.statistics()
    assert stats.reports == 100
    assert stats.batches_sent < 100
    assert stats.updates_accepted == stats.reports - stats.coalesced


@pytest.mark.slow
async def test_the_sync_client_reports_from_a_worker_thread_at_10khz(progress_server):
    """A thread reports 10,000 times at 10 kHz; the client sends a batch per flush interval."""

    def produce(base_url: str) -> tuple:
        with ProgressClient(base_url, flush_interval=0.05) as client:
            client.register("sync-hot", stage="start")
            start = time.perf_counter()
            for i in range(1, 10_001):
                client.report_nowait("sync-hot", i / 100, "hot")
                if i % 100 == 0:
                    delay = start + i / 10_000 - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
            elapsed = time.perf_counter() - start
            final = client.cancel("sync-hot")
            return client.statistics(), elapsed, final

    stats, elapsed, final = await trio.to_thread.run_sync(produce, progress_server.base_url)
    assert stats.reports == 10_000
    assert stats.batches_sent <= elapsed / 0.05 + 3
    assert stats.coalesced >= 10_000 - stats.batches_sent
    # The latest report went in before the cancel: the job shows where it stopped.
    assert final["status"] == "cancelled"
    assert final["percent"] == 100.0


async def test_a_tqdm_loop_reports_through_the_client(progress_server):
    def work(base_url: str) -> dict:
        with ProgressClient(base_url, flush_interval=0.05) as client:
            job = client.register("tqdm-remote")
            for _ in ReportingTqdm(
                range(50), report=client.for_job(job.job_id).report, desc="resize", mininterval=0
            ):
                time.sleep(0.002)
            return client.for_job(job.job_id).complete({"items": 50})

    seen: list[float] = []

    async def follow() -> None:
        snapshot = await wait_for_snapshot(
            progress_server.store, "tqdm-remote", lambda s: s.is_terminal
        )
        seen.append(snapshot.percent)

    async with trio.open_nursery() as nursery:
        final = await trio.to_thread.run_sync(work, progress_server.base_url)
        nursery.start_soon(follow)
    assert final["status"] == "completed"
    assert final["stage"] == "resize"
    assert final["message"] == "50/50 it"
    assert seen == [100.0]


async def test_the_sync_client_sends_its_token_and_translates_refusals(
    nursery, progress_server_config
):
    server = await start_progress_server(
        nursery, replace(progress_server_config, producer_token=TOKEN)
    )

    def use(base_url: str) -> None:
        with ProgressClient(base_url, token=TOKEN) as client:
            client.register("tok")
            client.report_nowait("tok", 10.0, "x")
            client.flush()
            client.complete("tok")
        with ProgressClient(base_url, token="wrong") as wrong:
            with pytest.raises(AuthenticationError, match="401 unauthorized") as refused:
                wrong.register("tok2")
            assert refused.value.field == "Authorization"
            assert TOKEN not in str(refused.value)

    await trio.to_thread.run_sync(use, server.base_url)
    assert (await server.store.get("tok")).status.value == "completed"
    server.stop.set()


async def test_a_wrong_token_stops_the_sync_clients_flush_thread_loudly(
    nursery, progress_server_config
):
    server = await start_progress_server(
        nursery, replace(progress_server_config, producer_token=TOKEN)
    )

    def use(base_url: str) -> None:
        client = ProgressClient(base_url, token="wrong", flush_interval=0.01)
        client.report_nowait("j", 1.0, "x")
        client._thread.join(timeout=10)  # the flush thread stops on the refusal
        with pytest.raises(RuntimeError, match="stopped sending") as stopped:
            client.report_nowait("j", 2.0, "x")
        assert isinstance(stopped.value.__cause__, AuthenticationError)
        with pytest.raises(RuntimeError, match="stopped sending"):
            client.close()
        with pytest.raises(RuntimeError, match="the progress client is closed"):
            client.report_nowait("j", 3.0, "x")

    await trio.to_thread.run_sync(use, server.base_url)
    server.stop.set()


async def test_an_unreachable_server_is_a_server_unavailable_error():
    base_url = "http://127.0.0.1:1"  # nothing listens on port 1: connection refused

    def use() -> None:
        with (
            pytest.raises(ServerUnavailableError, match="could not be reached"),
            ProgressClient(base_url, request_timeout=2) as client,
        ):
            client.register("x")

    with trio.fail_after(20):
        await trio.to_thread.run_sync(use)


async def test_a_server_error_without_a_mapping_is_a_server_rejected_error(autojump_clock):
    async def teapot(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, text="short and stout")

    async with open_progress_client("http://fake", transport=httpx.MockTransport(teapot)) as c:
        with pytest.raises(ServerRejectedError, match="418 I'm a teapot: short and stout") as r:
            await c.complete("j")
    assert r.value.status_code == 418


@pytest.mark.parametrize("code", [429, 502, 503, 504])
def test_answers_that_say_try_again_are_transient(code):
    import httpx
    from progress_sync import ServerUnavailableError
    from progress_sync.client._common import raise_for_answer

    response = httpx.Response(code, json={"error": "store unavailable", "detail": "try again"})
    with pytest.raises(
        ServerUnavailableError, match=f"the server answered {code} store unavailable"
    ):
        raise_for_answer(response, "job-1")
