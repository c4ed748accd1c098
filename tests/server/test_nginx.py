"""The server behind a real nginx: its default upstream protocol, and the README's config.

Rules: a real server on 127.0.0.1 port 0 and Debian's nginx in front of it (``tests/_nginx.py``:
its own config, pid file and logs in the test's temporary folder, no daemon), the real clock,
waits bounded by ``trio.fail_after``. "One by one" is shown in lock-step: each report is made
only once the previous event has come through nginx, so an nginx that held events back would
time the test out. Skips without nginx unless ``PROGRESS_SYNC_REQUIRE_EXTERNAL=1``.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, aclosing
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio
from _nginx import nginx_binary, run_nginx
from _server_thread import serve_in_thread
from httpx_sse import ServerSentEvent, aconnect_sse
from progress_sync.server import ServerConfig
from progress_sync.server.testing import start_progress_server
from test_web_page import (  # the browser fixtures, and the page helpers
    browser,  # noqa: F401
    expect,
    open_page,  # noqa: F401
    start_job,
    status_of,
    transport_of,
)

pytestmark = pytest.mark.nginx

KINDS = ["default", "readme"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    nginx_binary()
    return str(request.param)


@pytest.fixture
def config(progress_server_config: ServerConfig) -> ServerConfig:
    # Streams must end because the job ended, not because an idle timer fired.
    return replace(progress_server_config, keep_alive_timeout=30.0)


async def start_behind_nginx(nursery, config, kind: str, folder: Path, stack: ExitStack):
    server = await start_progress_server(nursery, config)
    proxy_url = await trio.to_thread.run_sync(
        stack.enter_context, run_nginx(kind, server.base_url, folder)
    )
    return server, proxy_url


async def test_events_come_one_by_one_the_stream_ends_with_its_job_and_a_reconnect_gets_204(
    nursery, config, kind, tmp_path
):
    with ExitStack() as stack:
        server, proxy_url = await start_behind_nginx(nursery, config, kind, tmp_path, stack)
        async with (
            httpx.AsyncClient(base_url=server.base_url, timeout=10) as direct,
            httpx.AsyncClient(base_url=proxy_url, timeout=10) as client,
        ):
            await direct.post("/api/jobs", json={"jobId": "job-1"})
            seen: list[ServerSentEvent] = []
            with trio.fail_after(20):
                async with (
                    aconnect_sse(client, "GET", "/api/jobs/job-1/progress/stream") as source,
                    aclosing(source.aiter_sse()) as events,
                ):
                    assert source.response.status_code == 200
                    async for event in events:
                        if event.event == "message":
                            continue
                        seen.append(event)
                        percent = json.loads(event.data)["percent"]
                        if event.event == "job-progress" and percent < 80:
                            # The next report only once this event came through nginx.
                            await direct.post(
                                "/api/jobs/job-1/progress", json={"percent": percent + 20}
                            )
                        elif event.event == "job-progress":
                            await direct.post("/api/jobs/job-1/complete", json={})
                    # The loop ended: nginx passed on the end of the stream.
            assert [e.event for e in seen][-1] == "job-completed"
            assert [json.loads(e.data)["percent"] for e in seen] == [0, 20, 40, 60, 80, 100]
            again = await client.get(
                "/api/jobs/job-1/progress/stream", headers={"Last-Event-ID": seen[-1].id}
            )
            assert again.status_code == 204
            assert "content-type" not in again.headers


@pytest.mark.browser
@pytest.mark.slow
def test_the_web_page_works_through_nginx(kind, progress_server_config, open_page, tmp_path):  # noqa: F811
    with ExitStack() as stack:
        base_url = stack.enter_context(
            serve_in_thread(replace(progress_server_config, keep_alive_timeout=30.0))
        )
        proxy_url = stack.enter_context(run_nginx(kind, base_url, tmp_path))
        tab = open_page(proxy_url + "/")
        job_id, job = start_job(tab.page, 1.5, rate=20)
        expect(status_of(job)).to_have_text("completed")
        expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        expect(transport_of(job)).to_have_text("Final · via SSE")
        urls = [r.url for r in tab.requests_for(job_id)]
        assert urls == [f"{proxy_url}/api/progress/stream?jobIds={job_id}"], "one stream"
