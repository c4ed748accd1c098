"""Connections end when they should: HTTP/1.0, ``Connection: close``, keep-alive, shutdown.

Rules: a real Hypercorn server on 127.0.0.1 port 0 and raw sockets, so every byte and the EOF
are seen as a client sees them; the real clock, with bounded waits (``trio.fail_after``) on
conditions, never sleeps. Timings asserted are lower bounds (a timer cannot fire early) or
generous upper bounds far from the other outcome (a connection left open for 30 s).
See ``server/_seam.py`` for why these connections used to stay open.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from dataclasses import replace

import pytest
import trio
from progress_sync import JobStatus
from progress_sync.server import ServerConfig
from progress_sync.server.testing import start_progress_server
from test_shutdown import progress_sync_command

NEVER = 30.0
"""A keep-alive timeout no test waits for: an EOF seen before it came from somewhere else."""


async def connect(base_url: str) -> trio.SocketStream:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.connect((host, int(port)))
    return trio.SocketStream(sock)


async def read_to_eof(stream: trio.SocketStream, within: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes; fails if it has not closed ``within`` s.

    Returns the bytes and the seconds from the call to the EOF."""
    start = trio.current_time()
    data = b""
    with trio.fail_after(within):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data, trio.current_time() - start


async def read_response(stream: trio.SocketStream) -> bytes:
    """One complete response with a ``content-length`` (the connection stays open)."""
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
    return data


@pytest.fixture
def config(progress_server_config: ServerConfig) -> ServerConfig:
    return replace(progress_server_config, keep_alive_timeout=NEVER, registration_timeout=0.5)


async def test_an_http10_request_gets_eof_right_after_the_body(nursery, config):
    server = await start_progress_server(nursery, config)
    async with await connect(server.base_url) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        data, took = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"}") or data.endswith(b"}\n")
        assert took < 2.0, took


async def test_connection_close_gets_eof_right_after_the_body(nursery, config):
    server = await start_progress_server(nursery, config)
    async with await connect(server.base_url) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data, took = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 200")
        assert took < 2.0, took


@pytest.mark.parametrize("ending", ["job-completed", "job-error"])
async def test_an_http10_stream_gets_eof_right_after_its_terminal_event(nursery, config, ending):
    server = await start_progress_server(nursery, config)
    assert server.store is not None
    if ending == "job-completed":
        await server.store.register("job-1")
    async with await connect(server.base_url) as stream:
        await stream.send_all(
            b"GET /api/jobs/job-1/progress/stream HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n"
        )
        if ending == "job-completed":
            await server.store.finish("job-1", JobStatus.COMPLETED)
        data, took = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"\n\n")
        last_event = data.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert f"event: {ending}".encode() in last_event, data
        assert took < 3.0, took


async def test_an_idle_keep_alive_connection_closes_after_the_keep_alive_timeout(nursery, config):
    server = await start_progress_server(nursery, replace(config, keep_alive_timeout=0.5))
    async with await connect(server.base_url) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_response(stream)
        # A second request on the same connection: it was kept alive.
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_response(stream)
        rest, idle_for = await read_to_eof(stream)
        assert rest == b""
        assert idle_for >= 0.45, idle_for


async def test_a_connection_without_a_complete_request_head_is_closed(nursery, config):
    server = await start_progress_server(nursery, replace(config, keep_alive_timeout=0.5))
    async with await connect(server.base_url) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # no blank line
        rest, took = await read_to_eof(stream)
        assert rest == b""
        assert took >= 0.45, took
    async with await connect(server.base_url) as silent:  # sends nothing at all
        rest, took = await read_to_eof(silent)
        assert rest == b""
        assert took >= 0.45, took


async def test_shutdown_closes_idle_connections_at_once(nursery, config):
    server = await start_progress_server(nursery, replace(config, graceful_timeout=10.0))
    async with await connect(server.base_url) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_response(stream)
        started = trio.current_time()
        server.stop.set()
        rest, _ = await read_to_eof(stream)
        assert rest == b""
        with trio.fail_after(5):
            await server.stopped.wait()
        # Far below the 10 s drain timeout: nothing waited for the idle connection.
        assert trio.current_time() - started < 2.0


async def test_sigterm_closes_an_idle_connection_and_exits_at_once():
    command = [
        *progress_sync_command(),
        "serve",
        "--port", "0",
        "--graceful-timeout", "10",
        "--keep-alive-timeout", str(NEVER),
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    log = bytearray()
    try:
        with trio.fail_after(20):
            while not re.search(rb"Running on http://[\d.:]+", log):
                chunk = await process.stderr.receive_some(4096)
                assert chunk, bytes(log)
                log.extend(chunk)
        base_url = re.search(rb"Running on (http://[\d.:]+)", log).group(1).decode()
        async with await connect(base_url) as stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(stream)
            signalled_at = trio.current_time()
            process.send_signal(signal.SIGTERM)
            rest, _ = await read_to_eof(stream)
            assert rest == b""
            with trio.fail_after(5):
                assert await process.wait() == 0
            # The drain timeout is 10 s: the idle connection held nothing back.
            assert trio.current_time() - signalled_at < 3.0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
