"""The ``progress-sync`` command, run as a real process (real clock, loopback only)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
import trio

COMMAND = [sys.executable, "-m", "progress_sync"]
ENV = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
async def test_demo_runs_jobs_to_their_ends_and_exits_0():
    result = await trio.run_process(
        [*COMMAND, "demo", "--port", "0"],
        capture_stdout=True,
        capture_stderr=True,
        env=ENV,
        check=False,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "every stream got its terminal event" in out
    assert re.search(r"curl -N http://127\.0\.0\.1:\d+/api/jobs/\w+/progress/stream", out)
    assert out.count("completed") >= 3
    assert "simulated failure at 60.0%" in out
    # Time left and the frame count, line by line (a log is not a terminal).
    assert re.search(r"long export: \d+\.\d% · about \d+ s left · frame \d+ of 150", out), out


@pytest.mark.slow
async def test_serve_streams_and_shuts_down_cleanly_on_sigterm():
    process = await trio.lowlevel.open_process(
        [*COMMAND, "serve", "--port", "0", "--flush-interval", "0.1"],
        stderr=subprocess.PIPE,
        env=ENV,
    )
    log = b""
    try:
        with trio.fail_after(20):
            while (match := re.search(rb"Running on (http://127\.0\.0\.1:\d+)", log)) is None:
                chunk = await process.stderr.receive_some()
                assert chunk, log.decode()
                log += chunk
        base_url = match.group(1).decode()
        async with httpx.AsyncClient(base_url=base_url) as client:
            created = await client.post(
                "/api/jobs", json={"kind": "demo", "params": {"durationS": 60}}
            )
            assert created.status_code == 201
            job_id = created.json()["jobId"]
            # The server is another process, so there is no event to wait on: poll its API.
            with trio.fail_after(10):
                while (await client.get(f"/api/jobs/{job_id}")).json()["percent"] == 0:  # noqa: ASYNC110
                    await trio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            while chunk := await process.stderr.receive_some():
                log += chunk
            returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.decode()
    assert returncode == 0, text
    assert "received SIGTERM, shutting down" in text
    assert f"job {job_id} (demo) registered in the store with status running" in text
    assert "server stopped; buffer flushed" in text


@pytest.mark.slow
async def test_serve_refuses_a_port_in_use_in_one_line():
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = await trio.run_process(
            [*COMMAND, "serve", "--port", str(port)], capture_stderr=True, env=ENV, check=False
        )
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is in use; pick another --port" in stderr
    assert "Traceback" not in stderr


async def _read_until(stream, needle: bytes, seen: bytes = b"") -> bytes:
    while needle not in seen:
        chunk = await stream.receive_some()
        assert chunk, seen.decode()
        seen += chunk
    return seen


@pytest.mark.slow
async def test_ctrl_c_stops_the_demo_cleanly_with_its_summary():
    process = await trio.lowlevel.open_process(
        [*COMMAND, "demo", "--port", "0", "--linger", "60"], stdout=subprocess.PIPE, env=ENV
    )
    try:
        with trio.fail_after(30):
            out = await _read_until(process.stdout, b"more on http")
            process.send_signal(signal.SIGINT)
            while chunk := await process.stdout.receive_some():
                out += chunk
            returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = out.decode()
    assert "interrupted: stopping the demo" in text
    assert "every stream got its terminal event" in text
    assert "Traceback" not in text
    assert returncode == 0


@pytest.mark.slow
async def test_demo_refuses_refuse_streams():
    result = await trio.run_process(
        [*COMMAND, "demo", "--refuse-streams"], capture_stderr=True, env=ENV, check=False
    )
    assert result.returncode == 2
    assert "--refuse-streams is for `serve` only" in result.stderr.decode()
