"""``GET /api/progress/ws``, the producer's persistent connection, and the clients using it.

Real servers on 127.0.0.1 (port 0), real WebSocket clients (websockets' trio client, and the
progress clients over websockets). Behaviour only: auth at the handshake, per-update
errors, limits, shutdown, reconnect after a restart, the fallback to POST behind a proxy
without upgrade support.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import trio
from progress_sync.client import ProgressClient, open_progress_client
from progress_sync.server.testing import start_progress_server
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.trio.client import connect

TOKEN = "producer-secret-for-tests"


async def wait_until(store, job_id: str, predicate, within: float = 10):
    """The job's first snapshot that satisfies ``predicate`` (``within`` seconds at most)."""
    with trio.fail_after(within):
        async with store.subscribe(job_id) as subscription:
            async for snapshot in subscription:
                if predicate(snapshot):
                    return snapshot
    raise AssertionError(f"job {job_id} ended without matching")  # pragma: no cover


def ws_url(server) -> str:
    return server.base_url.replace("http://", "ws://") + "/api/progress/ws"


async def register(server, job_id: str, token: str | None = None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with server.client(headers=headers) as client:
        response = await client.post("/api/jobs", json={"jobId": job_id})
    assert response.status_code == 201, response.text


async def test_a_frame_of_updates_is_answered_with_its_outcome_per_update(progress_server):
    await register(progress_server, "ws-a")
    await register(progress_server, "ws-b")
    frame = [
        {"jobId": "ws-a", "percent": 10, "stage": "one"},
        {"jobId": "ws-b", "percent": 150},
        {"jobId": "ws-b", "percent": 20, "pct": 1},
        {"jobId": "ghost", "percent": 5},
        {"jobId": "ws-b", "percent": 30, "stage": "two"},
    ]
    async with connect(ws_url(progress_server)) as socket:
        await socket.send(json.dumps(frame))
        answer = json.loads(await socket.recv())
        assert answer["accepted"] == 2
        assert answer["unknownJobs"] == ["ghost"]
        errors = {e["line"]: (e["field"], e["reason"]) for e in answer["errors"]}
        assert set(errors) == {2, 3}
        assert errors[2][0] == "percent"
        assert "from 0 to 100" in errors[2][1]
        assert errors[3] == ("pct", errors[3][1])
        assert "unknown field" in errors[3][1]
        # The connection stays open: the next frame is answered too.
        await socket.send(json.dumps([{"jobId": "ws-a", "percent": 50}]))
        assert json.loads(await socket.recv())["accepted"] == 1
    await wait_until(progress_server.store, "ws-a", lambda s: s.percent == 50)
    snapshot = await wait_until(progress_server.store, "ws-b", lambda s: s.percent == 30)
    assert snapshot.stage == "two"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('{"jobId": "x", "percent": 1}', "must be a JSON array of updates, not an object"),
        ("[{", "is not valid JSON"),
    ],
)
async def test_a_frame_that_is_not_an_array_gets_the_apis_400_and_the_socket_stays(
    progress_server, text, detail
):
    async with connect(ws_url(progress_server)) as socket:
        await socket.send(text)
        answer = json.loads(await socket.recv())
        assert answer["status"] == 400
        assert answer["error"] == "invalid request"
        assert answer["field"] == "body"
        assert detail in answer["detail"]
        await socket.send("[]")
        assert json.loads(await socket.recv())["accepted"] == 0


async def test_the_handshake_needs_the_producer_token(nursery, progress_server_config):
    server = await start_progress_server(
        nursery, replace(progress_server_config, producer_token=TOKEN)
    )
    await register(server, "secured", TOKEN)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server)):
            pass
    assert refused.value.response.status_code == 401
    body = json.loads(refused.value.response.body)
    assert body["error"] == "unauthorized"
    assert body["field"] == "Authorization"
    assert TOKEN not in refused.value.response.body.decode()
    with pytest.raises(InvalidStatus) as wrong:
        async with connect(ws_url(server), additional_headers={"Authorization": "Bearer nope"}):
            pass
    assert wrong.value.response.status_code == 401
    async with connect(
        ws_url(server), additional_headers={"Authorization": f"Bearer {TOKEN}"}
    ) as socket:
        await socket.send(json.dumps([{"jobId": "secured", "percent": 7}]))
        assert json.loads(await socket.recv())["accepted"] == 1
    await server.aclose()


async def test_limits_an_oversized_frame_closes_and_a_long_batch_is_a_413(
    nursery, progress_server_config
):
    config = replace(progress_server_config, max_body_bytes=4096, max_batch_updates=10)
    server = await start_progress_server(nursery, config)
    await register(server, "lim")
    async with connect(ws_url(server)) as socket:
        await socket.send(json.dumps([{"jobId": "lim", "percent": 1}] * 11))
        answer = json.loads(await socket.recv())
        assert answer["status"] == 413
        assert answer["error"] == "batch too large"
        assert "at most 10 updates" in answer["detail"]
        too_big = json.dumps([{"jobId": "lim", "percent": 1, "stage": "s" * 190}] * 30)
        assert len(too_big) > 4096
        await socket.send(too_big)
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd.code == 1009
        assert "4096 bytes" in closed.value.rcvd.reason
    assert (await server.store.get("lim")).percent == 0
    await server.aclose()


async def test_a_binary_frame_closes_with_unsupported_data(progress_server):
    async with connect(ws_url(progress_server)) as socket:
        await socket.send(b"[]")
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd.code == 1003


async def test_shutdown_closes_open_sockets_with_service_restart(nursery, progress_server_config):
    server = await start_progress_server(nursery, progress_server_config)
    async with connect(ws_url(server)) as socket:
        await socket.send("[]")
        await socket.recv()
        server.stop.set()
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
            await socket.recv()
        assert closed.value.rcvd.code == 1012
    with trio.fail_after(10):
        await server.stopped.wait()


# --- the clients -------------------------------------------------------------------------------


async def test_the_trio_client_uses_the_websocket_by_default(progress_server):
    await register(progress_server, "tc")
    async with open_progress_client(progress_server.base_url, flush_interval=0.05) as client:
        client.report_nowait("tc", 40, "ws")
        await wait_until(progress_server.store, "tc", lambda s: s.percent == 40)
        statistics = client.statistics()
    assert statistics.path == "websocket"
    assert statistics.updates_accepted >= 1


async def test_the_sync_client_uses_the_websocket_and_its_token(nursery, progress_server_config):
    server = await start_progress_server(
        nursery, replace(progress_server_config, producer_token=TOKEN)
    )
    await register(server, "sc", TOKEN)

    def produce() -> tuple[str, int]:
        with ProgressClient(server.base_url, token=TOKEN, flush_interval=0.05) as client:
            client.report_nowait("sc", 60, "sync")
            client.flush()
            return client.statistics().path, client.statistics().updates_accepted

    path, accepted = await trio.to_thread.run_sync(produce)
    assert (path, accepted) == ("websocket", 1)
    await wait_until(server.store, "sc", lambda s: s.percent == 60)
    await server.aclose()


async def test_a_wrong_token_at_the_handshake_stops_the_client(nursery, progress_server_config):
    from progress_sync import AuthenticationError

    server = await start_progress_server(
        nursery, replace(progress_server_config, producer_token=TOKEN)
    )
    await register(server, "wt", TOKEN)

    async def report_with_a_wrong_token() -> None:
        async with open_progress_client(server.base_url, token="nope", flush_interval=5) as c:
            c.report_nowait("wt", 1)
            await c.flush()

    with pytest.raises(AuthenticationError):
        await report_with_a_wrong_token()
    await server.aclose()


async def test_the_client_reconnects_after_a_restart_keeping_the_latest_report(
    nursery, progress_server_config, caplog
):
    caplog.set_level(logging.INFO, logger="progress_sync.client")
    first = await start_progress_server(nursery, progress_server_config)
    port = int(first.base_url.rsplit(":", 1)[1])
    await register(first, "rs")
    async with open_progress_client(first.base_url, flush_interval=0.05) as client:
        client.report_nowait("rs", 10)
        await wait_until(first.store, "rs", lambda s: s.percent == 10)
        await first.aclose()
        # While the server is away: reports pile up, the latest per job is kept.
        for percent in (20, 30, 40):
            client.report_nowait("rs", percent)
            await trio.sleep(0.1)
        second = await start_progress_server(nursery, replace(progress_server_config, port=port))
        await register(second, "rs")  # a new in-memory store: the producer registers again
        snapshot = await wait_until(second.store, "rs", lambda s: s.percent == 40, within=20)
        statistics = client.statistics()
    assert snapshot.percent == 40
    assert statistics.path == "websocket"
    assert statistics.reconnects >= 1
    assert statistics.failed_batches >= 1
    assert any("reconnected to" in r.getMessage() for r in caplog.records)
    await second.aclose()


async def _proxy_without_upgrade(
    listener: trio.SocketListener, backend_port: int, nursery: trio.Nursery
) -> None:
    """A TCP proxy that drops ``Upgrade`` and ``Connection`` from each request head, as a
    proxy without WebSocket support does (they are hop-by-hop headers)."""

    async def pump(source: trio.abc.Stream, target: trio.abc.Stream) -> None:
        try:
            async for chunk in source:
                await target.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await target.aclose()

    async def handle(client: trio.SocketStream) -> None:
        backend = await trio.open_tcp_stream("127.0.0.1", backend_port)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await client.receive_some()
            if not chunk:
                return
            head += chunk
        top, _, rest = head.partition(b"\r\n\r\n")
        lines = [
            line
            for line in top.split(b"\r\n")
            if not line.lower().startswith((b"upgrade:", b"connection:"))
        ]
        await backend.send_all(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
        async with trio.open_nursery() as pumps:
            pumps.start_soon(pump, client, backend)
            pumps.start_soon(pump, backend, client)

    await trio.serve_listeners(handle, [listener], handler_nursery=nursery)


async def test_behind_a_proxy_without_upgrade_the_client_falls_back_to_post(
    nursery, progress_server, caplog
):
    await register(progress_server, "px")
    backend_port = int(progress_server.base_url.rsplit(":", 1)[1])
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    proxy_port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(_proxy_without_upgrade, listeners[0], backend_port, nursery)
    proxy_url = f"http://127.0.0.1:{proxy_port}"

    def produce() -> tuple[str, int]:
        with ProgressClient(proxy_url, flush_interval=0.05) as client:
            client.report_nowait("px", 70)
            client.flush()
            return client.statistics().path, client.statistics().updates_accepted

    path, accepted = await trio.to_thread.run_sync(produce)
    assert (path, accepted) == ("http", 1)
    await wait_until(progress_server.store, "px", lambda s: s.percent == 70)
    assert any("POST /api/progress from now on" in r.getMessage() for r in caplog.records)
    async with open_progress_client(proxy_url, flush_interval=0.05) as client:
        client.report_nowait("px", 80)
        await client.flush()
        assert client.statistics().path == "http"
    await wait_until(progress_server.store, "px", lambda s: s.percent == 80)
    nursery.cancel_scope.cancel()
