"""Bounded resources: the connection limit, the file-descriptor limit, every drop counted.

Rules: real Hypercorn servers on 127.0.0.1 port 0 and raw sockets, the real clock, waits
bounded by ``trio.fail_after`` on conditions (a connection held back is checked against the
server's own gauge of open connections, not a sleep).
"""

from __future__ import annotations

import resource
import subprocess

import pytest
import trio
from progress_sync.server._connections import FD_RESERVE, raise_fd_limit
from test_connection_end import connect, read_response
from test_network_lifecycle import eventually, open_background, open_network_server
from test_shutdown import progress_sync_command


def open_connections(server) -> float:
    return server.services.metrics.open_connections._value.get()


async def test_connections_beyond_the_limit_wait_until_one_closes():
    async with open_network_server(max_connections=2, keep_alive_timeout=30.0) as server:
        first = await connect(server.url)
        async with await connect(server.url) as second:
            await second.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(second)
            await eventually(lambda: open_connections(server) == 2)
            async with await connect(server.url) as third:  # the kernel's backlog takes it
                await third.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                # Not accepted while two are open: no answer, and the gauge stays at the limit.
                with trio.move_on_after(0.3):
                    assert await third.receive_some(65536) == b"", "answered beyond the limit"
                assert open_connections(server) == 2
                await first.aclose()
                # Accepted and answered once the first one is gone.
                assert (await read_response(third)).startswith(b"HTTP/1.1 200")
                assert open_connections(server) == 2


def test_the_soft_fd_limit_is_raised_to_what_the_connections_need():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3000 + FD_RESERVE:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) is below what this test raises to")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert raise_fd_limit(3000) == 3000 + FD_RESERVE
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (3000 + FD_RESERVE, hard)
        assert raise_fd_limit(100) == 3000 + FD_RESERVE  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_serve_refuses_at_once_when_the_hard_fd_limit_is_too_low():
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 2000))

    result = subprocess.run(
        [*progress_sync_command(), "serve", "--port", "0", "--max-subscribers", "5000"],
        preexec_fn=low_limit,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "6024 connections" in result.stderr
    assert "need 6280 file descriptors" in result.stderr
    assert "at most 2000" in result.stderr
    assert "LimitNOFILE" in result.stderr


async def report_slowly(sink, job_id: str) -> None:
    percent = 0.0
    while True:
        percent = (percent + 0.01) % 100
        sink.report_nowait(job_id, percent, "work", "m" * 1000)
        await trio.sleep(0.05)


async def test_a_connection_the_kernel_aborts_counts_as_a_dropped_client():
    # The client stops reading; the server's writes are small and its socket buffer large, so
    # no write ever waits (the app's send timeout never fires): only the kernel's
    # TCP_USER_TIMEOUT (set to send_timeout) sees the unacknowledged data and aborts.
    async with (
        open_network_server(send_timeout=1.0, flush_interval=0.05) as server,
        open_background() as nursery,
    ):
        await server.store.register("job-1")
        nursery.start_soon(report_slowly, server.services.sink, "job-1")
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 2048)
        await sock.connect(server.address)
        async with trio.SocketStream(sock) as frozen:
            await frozen.send_all(
                b"GET /api/jobs/job-1/progress/stream HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            dropped = server.services.metrics.clients_dropped
            await eventually(
                lambda: dropped.labels(reason="tcp_user_timeout")._value.get() == 1,
                within=15.0,
            )
            await eventually(lambda: server.services.streams.admitted == 0)
            assert dropped.labels(reason="send_timeout")._value.get() == 0


async def test_a_connection_its_client_closed_while_idle_is_closed_at_once():
    # Hypercorn alone keeps it (and its file descriptor) until the keep-alive timeout.
    async with open_network_server(keep_alive_timeout=30.0) as server:
        async with await connect(server.url) as client:
            await client.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(client)
            assert open_connections(server) == 1
        await eventually(lambda: open_connections(server) == 0, within=3.0)
