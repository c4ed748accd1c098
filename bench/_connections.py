"""Connection count: tens of thousands of SSE subscribers on one server process.

Our server (``progress-sync serve``, batched, in-memory store) holds ``--subscribers`` SSE
streams at once: ``--active`` of them follow ``--active-jobs`` jobs that a producer reports at
``--rate`` Hz (``POST /api/progress`` every 0.1 s), the others follow idle jobs (registered,
never reported). The clients run in ``--client-processes`` processes of their own (each
process may hold only as many sockets as its open-files limit allows), each connection a
trio socket speaking HTTP/1.1 through h11.

Figures:

- server memory per subscriber: (the server's RSS once every stream is open and has had its
  first event, minus its RSS with the jobs registered and no stream) ÷ subscribers, in KiB;
- freshness of the active subscribers: for each event, its arrival time minus the
  ``reportedAt`` it carries (the producer's clock, same machine), p50/p99/max in ms;
- the server's CPU while the producer reports (µs per event delivered).

Run: ``python -m progress_sync.bench._connections [--subscribers 19900] [--active 1000]``;
it writes ``bench/results/connections.json`` and ``.md``. The open-files limit bounds the
subscribers: the server needs one descriptor per connection (``ulimit -n``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h11
import httpx
import psutil
import trio

from ._processes import open_server_process, progress_sync_argv
from ._workload import System

OPENING_AT_ONCE = 64
_REPORTED_AT = re.compile(rb'"reportedAt":([0-9.eE+-]+)')


# --- the client process ------------------------------------------------------------------------


async def _stream(
    host: str,
    port: int,
    path: str,
    active: bool,
    opening: trio.CapacityLimiter,
    state: dict[str, Any],
) -> None:
    async with opening:
        sock = await trio.open_tcp_stream(host, port)
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=path,
        headers=[("Host", f"{host}:{port}"), ("Accept", "text/event-stream")],
    )
    async with sock:
        await sock.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        first = True
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await sock.receive_some(65536)
                if not data:
                    return
                connection.receive_data(data)
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    state["errors"].append(f"{path}: {event.status_code}")
                    return
            elif isinstance(event, h11.Data):
                chunk = bytes(event.data)
                if first and b"data:" in chunk:
                    first = False
                    state["flowing"] += 1
                    if state["flowing"] == state["total"]:
                        state["all_flowing"].set()
                if active and state["measuring"]:
                    arrived = time.time()
                    for match in _REPORTED_AT.finditer(chunk):
                        state["freshness"].append(arrived - float(match.group(1)))
            else:
                return


async def _client_main(spec: dict[str, Any]) -> None:
    host, port = spec["host"], spec["port"]
    streams: list[tuple[str, bool]] = spec["streams"]
    state: dict[str, Any] = {
        "flowing": 0,
        "total": len(streams),
        "all_flowing": trio.Event(),
        "measuring": False,
        "freshness": [],
        "errors": [],
    }
    opening = trio.CapacityLimiter(OPENING_AT_ONCE)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        for path, active in streams:
            nursery.start_soon(_stream, host, port, path, active, opening, state)
        with trio.move_on_after(spec["connect_timeout"]):
            await state["all_flowing"].wait()
        print(json.dumps({"ready": state["flowing"], "errors": state["errors"][:5]}), flush=True)
        await stdin.receive_some(100)  # "start"
        state["measuring"] = True
        await stdin.receive_some(100)  # "end"
        state["measuring"] = False
        print(
            json.dumps({"freshness": state["freshness"], "errors": state["errors"][:5]}),
            flush=True,
        )
        nursery.cancel_scope.cancel()


# --- the coordinator ---------------------------------------------------------------------------


@dataclass
class ConnectionsResult:
    """One run of the scenario."""

    command: str
    started_utc: str
    load_average: tuple[float, ...]
    subscribers: int
    active: int
    active_jobs: int
    idle_jobs: int
    rate: float
    duration_s: float
    flowing: int
    rss_base_mib: float
    rss_open_mib: float
    kib_per_subscriber: float
    events: int
    freshness_p50_ms: float
    freshness_p99_ms: float
    freshness_max_ms: float
    server_cpu_s: float
    errors: list[str]

    def markdown(self) -> str:
        per_event = self.server_cpu_s / self.events * 1e6 if self.events else math.nan
        return (
            f"# Connection count: {self.started_utc}\n\n"
            f"`{self.command}`; load average at the start {self.load_average}\n\n"
            f"| figure | value |\n| --- | --- |\n"
            f"| SSE subscribers held (streaming) | {self.flowing:,} of {self.subscribers:,} |\n"
            f"| server RSS, jobs only / all streams open | {self.rss_base_mib:.0f} / "
            f"{self.rss_open_mib:.0f} MiB |\n"
            f"| server memory per subscriber | **{self.kib_per_subscriber:.1f} KiB** |\n"
            f"| active subscribers (jobs x {self.rate:g} Hz) | {self.active:,} on "
            f"{self.active_jobs} jobs |\n"
            f"| freshness p50 / p99 / max (arrival - reportedAt) | {self.freshness_p50_ms:.0f}"
            f" / **{self.freshness_p99_ms:.0f}** / {self.freshness_max_ms:.0f} ms |\n"
            f"| events to active subscribers in {self.duration_s:g} s | {self.events:,} |\n"
            f"| server CPU while reporting | {self.server_cpu_s:.2f} s "
            f"({per_event:.0f} µs per event delivered, idle streams and ingest included) |\n"
            + (f"\nErrors: {self.errors}\n" if self.errors else "")
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _register(url: str, job_ids: list[str]) -> None:
    limiter = trio.CapacityLimiter(16)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(job_id: str) -> None:
            async with limiter:
                (await client.post("/api/jobs", json={"jobId": job_id})).raise_for_status()

        async with trio.open_nursery() as nursery:
            for job_id in job_ids:
                nursery.start_soon(one, job_id)


async def _produce(url: str, job_ids: list[str], rate: float, until: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        n = 0
        while time.time() < until:
            n += 1
            now = time.time()
            body = [
                {"jobId": j, "percent": min(99.0, n * 0.1), "stage": "c", "reportedAt": now}
                for j in job_ids
            ]
            (await client.post("/api/progress", json=body)).raise_for_status()
            await trio.sleep(max(0.0, 1.0 / rate - (time.time() - now)))


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def _coordinate(args: argparse.Namespace) -> ConnectionsResult:
    argv = progress_sync_argv(
        System.BATCHED,
        flush_interval=0.5,
        extra=["--max-subscribers", str(args.subscribers + 100)],
    )
    active_jobs = [f"active-{j}" for j in range(args.active_jobs)]
    idle_jobs = [f"idle-{j}" for j in range(args.idle_jobs)]
    load = tuple(round(x, 2) for x in os.getloadavg())
    async with open_server_process(argv) as server:
        url = httpx.URL(server.url)
        await _register(server.url, active_jobs + idle_jobs)
        await trio.sleep(1.0)
        base = _rss_mib(server.pid)
        streams: list[tuple[str, bool]] = []
        for i in range(args.subscribers):
            if i < args.active:
                job, active = active_jobs[i % len(active_jobs)], True
            else:
                job, active = idle_jobs[i % len(idle_jobs)], False
            streams.append((f"/api/jobs/{job}/progress/stream", active))
        shares = [streams[k :: args.client_processes] for k in range(args.client_processes)]
        clients = []
        for share in shares:
            spec = {
                "host": url.host,
                "port": url.port,
                "streams": share,
                "connect_timeout": args.connect_timeout,
            }
            clients.append(
                await trio.lowlevel.open_process(
                    [sys.executable, "-m", "progress_sync.bench._connections", "--client"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
            assert clients[-1].stdin is not None
            await clients[-1].stdin.send_all(json.dumps(spec).encode() + b"\n")
        try:
            readers = [_Lines(c.stdout) for c in clients]  # type: ignore[arg-type]
            ready = [json.loads(await r.line()) for r in readers]
            flowing = sum(r["ready"] for r in ready)
            errors = [e for r in ready for e in r["errors"]]
            print(f"  {flowing:,} of {args.subscribers:,} streams flowing", flush=True)
            await trio.sleep(2.0)
            open_rss = _rss_mib(server.pid)
            cpu_before = server.cpu_seconds()
            for c in clients:
                await c.stdin.send_all(b"start\n")  # type: ignore[union-attr]
            await _produce(server.url, active_jobs, args.rate, time.time() + args.duration)
            await trio.sleep(1.0)
            cpu = server.cpu_seconds() - cpu_before
            for c in clients:
                await c.stdin.send_all(b"end\n")  # type: ignore[union-attr]
            finals = [json.loads(await r.line()) for r in readers]
        finally:
            for c in clients:
                c.kill()
                await c.wait()
    freshness = [f for r in finals for f in r["freshness"]]
    errors += [e for r in finals for e in r["errors"]]
    return ConnectionsResult(
        command="python -m progress_sync.bench._connections " + " ".join(sys.argv[1:]),
        started_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_average=load,
        subscribers=args.subscribers,
        active=args.active,
        active_jobs=args.active_jobs,
        idle_jobs=args.idle_jobs,
        rate=args.rate,
        duration_s=args.duration,
        flowing=flowing,
        rss_base_mib=base,
        rss_open_mib=open_rss,
        kib_per_subscriber=(open_rss - base) * 1024 / max(1, flowing),
        events=len(freshness),
        freshness_p50_ms=_percentile(freshness, 0.5) * 1000,
        freshness_p99_ms=_percentile(freshness, 0.99) * 1000,
        freshness_max_ms=max(freshness, default=math.nan) * 1000,
        server_cpu_s=cpu,
        errors=errors[:10],
    )


class _Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(1 << 20)
            if not chunk:
                raise RuntimeError("a client process ended early")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line; run the scenario (or, with ``--client``, one client process)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--subscribers", type=int, default=min(20_000, limit - 100))
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--active-jobs", type=int, default=100)
    parser.add_argument("--idle-jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--client-processes", type=int, default=3)
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--output-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--tag", default="connections")
    args = parser.parse_args(argv)
    if args.client:
        spec = json.loads(sys.stdin.buffer.readline())
        trio.run(_client_main, spec)
        return
    result = trio.run(_coordinate, args)
    text = result.markdown()
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.tag}.md").write_text(text)
    (args.output_dir / f"{args.tag}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")


if __name__ == "__main__":
    main()
