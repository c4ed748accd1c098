"""Reconnect storm: thousands of SSE clients come back within seconds (after a deploy, say).

``python -m progress_sync.bench._storm --connections 10000 --over 5``

Starts ``progress-sync serve`` as its own process (the real command, on a free loopback port,
with ``--max-subscribers`` above the storm), registers ``--jobs`` external jobs, then opens
``--connections`` SSE streams from this process at an even pace over ``--over`` seconds, each a
raw socket sending ``GET /api/jobs/{id}/progress/stream``, and measures, per connection, the
time from the start of its connect to the end of its first event (the job's current snapshot).
Every stream stays open until the last one has its first event, so the server holds them all
at once. Prints the figures (and ``--json`` writes them): streams answered, errors by kind
(refused, reset, timeout, non-200), time to first event p50/p99/max, how long the opening
took, the server's peak memory, and the machine's load average before and after (the machine
may be shared: the load says how much else ran).
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import httpx
import trio

FIRST_EVENT_TIMEOUT = 60.0
"""Seconds a connection may wait for its first event before it counts as a timeout."""


@dataclass
class StormResult:
    """The figures of one storm (times in milliseconds)."""

    connections: int
    over_s: float
    jobs: int
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    opening_took_s: float = 0.0
    first_event_p50_ms: float = 0.0
    first_event_p99_ms: float = 0.0
    first_event_max_ms: float = 0.0
    server_peak_rss_mib: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    command: str = ""


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def _has_first_event(data: bytes) -> bool:
    # The body is chunked: a blank line after the first ``event:`` line ends the event.
    at = data.find(b"\nevent: ")
    return at >= 0 and b"\n\n" in data[at:]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _server_command(connections: int, server_args: tuple[str, ...] = ()) -> list[str]:
    script = Path(sys.executable).with_name("progress-sync")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "progress_sync"]
    return [
        *base,
        "serve",
        "--port", "0",
        "--max-subscribers", str(connections + 100),
        "--registration-timeout", "5",
        *server_args,
    ]  # fmt: skip


async def _start_server(
    connections: int, log_path: Path, server_args: tuple[str, ...]
) -> tuple[trio.Process, str]:
    # The log goes to a file: a pipe nobody reads would fill and block the server.
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            _server_command(connections, server_args), stderr=log_file
        )
    log = trio.Path(log_path)
    with trio.fail_after(30):
        while (found := re.search(rb"Running on (http://[\d.:]+)", await log.read_bytes())) is None:
            if process.returncode is not None:
                raise RuntimeError(f"the server did not start: {await log.read_text()}")
            await trio.sleep(0.05)
    return process, found.group(1).decode()


def _peak_rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


async def _first_event(
    address: tuple[str, int], path: str
) -> tuple[float, trio.socket.SocketType] | str:
    """Open one stream; its time to first event (seconds) and socket, or what went wrong."""
    started = trio.current_time()
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with trio.fail_after(FIRST_EVENT_TIMEOUT):
            await sock.connect(address)
            request = f"GET {path} HTTP/1.1\r\nHost: storm\r\nAccept: text/event-stream\r\n\r\n"
            await sock.send(request.encode())
            data = b""
            while not _has_first_event(data):
                if data.startswith(b"HTTP/") and not data.startswith(b"HTTP/1.1 200"):
                    break  # refused (503, say): counted by its status line below
                chunk = await sock.recv(65536)
                if not chunk:
                    sock.close()
                    return "closed before the first event"
                data += chunk
    except trio.TooSlowError:
        sock.close()
        return "timeout"
    except OSError as exc:
        sock.close()
        return f"{type(exc).__name__} ({exc.strerror})"
    if not data.startswith(b"HTTP/1.1 200"):
        sock.close()
        return data.split(b"\r\n", 1)[0].decode(errors="replace")
    return trio.current_time() - started, sock


async def run_storm(
    connections: int, over: float, jobs: int, server_args: tuple[str, ...] = ()
) -> StormResult:
    """Run one storm against a fresh server process; see the module docstring."""
    _raise_own_fd_limit(connections + 256)
    result = StormResult(connections=connections, over_s=over, jobs=jobs)
    result.load_before = os.getloadavg()
    log_path = Path(tempfile.mkdtemp(prefix="storm-")) / "server.log"
    process, base_url = await _start_server(connections, log_path, server_args)
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    address = (host, int(port))
    try:
        async with httpx.AsyncClient(base_url=base_url) as client:
            for n in range(jobs):
                await client.post("/api/jobs", json={"jobId": f"storm-{n}"})
        latencies: list[float] = []
        errors: dict[str, int] = {}
        all_answered = trio.Event()
        pending = connections
        sockets: list[trio.socket.SocketType] = []

        def done() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                all_answered.set()

        async def one(n: int) -> None:
            try:
                outcome = await _first_event(address, f"/api/jobs/storm-{n % jobs}/progress/stream")
            finally:
                done()
            if isinstance(outcome, str):
                errors[outcome] = errors.get(outcome, 0) + 1
            else:
                latencies.append(outcome[0])
                sockets.append(outcome[1])
            await all_answered.wait()  # hold the stream open until the storm is over

        opened_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            for n in range(connections):
                target = opened_at + over * n / connections
                await trio.sleep_until(target)
                nursery.start_soon(one, n)
            result.opening_took_s = trio.current_time() - opened_at
            await all_answered.wait()
            result.server_peak_rss_mib = _peak_rss_mib(process.pid)
        for sock in sockets:
            sock.close()
        result.answered = len(latencies)
        result.errors = errors
        if latencies:
            result.first_event_p50_ms = round(statistics.median(latencies) * 1000, 1)
            result.first_event_p99_ms = round(_percentile(latencies, 0.99) * 1000, 1)
            result.first_event_max_ms = round(max(latencies) * 1000, 1)
    finally:
        process.terminate()
        with trio.move_on_after(15):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    result.load_after = os.getloadavg()
    return result


@click.command()
@click.option("--connections", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option("--over", default=5.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--jobs", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@click.argument("server_args", nargs=-1)
def main(
    connections: int, over: float, jobs: int, json_path: str | None, server_args: tuple[str, ...]
) -> None:
    """Open CONNECTIONS SSE streams over OVER seconds against a fresh server; print figures.

    SERVER_ARGS (after ``--``) are passed to ``progress-sync serve``.
    """
    result = trio.run(run_storm, connections, over, jobs, server_args)
    result.command = " ".join(["python -m progress_sync.bench._storm", *sys.argv[1:]])
    text = json.dumps(asdict(result), indent=2)
    click.echo(text)
    if json_path is not None:
        Path(json_path).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
