"""``progress-sync run``: run a command, read its progress from its output, report it live."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

import trio

from .._errors import JobFinishedError, JobNotFoundError
from .._rate import RateState, format_time_left
from .._snapshot import wall_clock
from ._async import AsyncProgressClient, open_progress_client
from ._common import DEFAULT_CLIENT_FLUSH_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT
from ._parsers import OutputProgressParser, ParsedProgress

INTERRUPT_GRACE = 2.0
"""Seconds a command gets to exit by itself after Ctrl-C (the terminal sends it SIGINT too)
before it is sent SIGTERM."""

TERMINATE_GRACE = 5.0
"""Seconds a command gets to exit after SIGTERM before it is killed (SIGKILL)."""

STDERR_TAIL_BYTES = 8192
"""Bytes of the command's stderr kept for the error message of a failed job."""

ERROR_TAIL_LINES = 10
"""Lines of stderr (the last ones) in a failed job's error message."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Notice = Callable[[str], None]


class _Output:
    """Copies one of the command's streams to ours and feeds it to the parser."""

    def __init__(self, name: str, sink: BinaryIO, keep_tail: bool) -> None:
        self.name = name
        self.sink = sink
        self.tail = bytearray() if keep_tail else None

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)
        self.sink.flush()
        if self.tail is not None:
            self.tail += chunk
            del self.tail[:-STDERR_TAIL_BYTES]


def stderr_tail(data: bytes, lines: int = ERROR_TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of ``data`` (``\\r`` ends a line too), ANSI removed."""
    text = _ANSI.sub("", data.decode("utf-8", errors="replace"))
    kept = [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]
    return "\n".join(kept[-lines:])[-1500:]


def exit_description(returncode: int) -> str:
    """``exit code 3`` or ``killed by signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


async def run_command(
    argv: list[str],
    *,
    server: str,
    token: str | None = None,
    job_id: str | None = None,
    stage: str | None = None,
    flush_interval: float = DEFAULT_CLIENT_FLUSH_INTERVAL,
    heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
    quiet: bool = False,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
) -> int:
    """Run ``argv`` as an external job of the server at ``server`` and return an exit code.

    Registers the job (``running``), runs the command with its stdout and stderr copied to
    ours as they come, reports the progress found in them (see ``OutputProgressParser``)
    once per flush interval, and ends the job ``completed`` (exit code 0), ``failed`` (the exit
    code and the tail of stderr as the error) or ``cancelled`` (Ctrl-C or SIGTERM).

    Python commands get ``PYTHONUNBUFFERED=1`` so their output arrives as it is printed.

    Args:
        argv: the command and its arguments.
        server: the server's URL.
        token: the producer token, or None.
        job_id: the job id to register; the server picks one by default.
        stage: the stage reported when the output names none; the program's name by default.
        flush_interval: seconds between batches of progress (default 0.5).
        heartbeat_timeout: the job's lease in seconds (default 60; None for none): while
            this runs the client heartbeats the job, and if this process is killed the server
            ends the job ``failed`` once the lease runs out.
        quiet: do not print the job's id and outcome on stderr.
        stdout: where the command's stdout goes (ours by default).
        stderr: where its stderr goes (ours by default).

    Returns:
        The command's exit code; 128 + the signal number when it was killed by a signal or
        interrupted (130 for Ctrl-C); 127 when it could not be found, 126 when it could not
        be started.

    Raises:
        ServerUnavailableError: the server could not be reached to register the job.
        AuthenticationError: the server refused the token.
        JobExistsError: ``job_id`` is taken.
    """
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer
    program = os.path.basename(argv[0])
    default_stage = stage if stage is not None else program[:200]

    def notice(text: str) -> None:
        if not quiet:
            err.write(f"progress-sync: {text}\n".encode())
            err.flush()

    async with open_progress_client(server, token=token, flush_interval=flush_interval) as client:
        job = await client.register(
            job_id,
            status="running",
            stage=default_stage,
            message=shlex.join(argv)[:2000],
            heartbeat_timeout=heartbeat_timeout,
        )
        notice(f"job {job.job_id}: {server.rstrip('/')}{job.stream_url}")
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            try:
                process = await trio.lowlevel.open_process(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as exc:
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                reason = f"could not start {program}: {exc}"
                await _finish(client, job.job_id, "fail", reason, notice)
                notice(reason)
                return code
            interrupted, returncode, tail = await _supervise(
                process,
                client,
                job.job_id,
                default_stage,
                OutputProgressParser(argv),
                signals,
                out,
                err,
                _TimeLeft(notice),
            )
            if interrupted is not None:
                name = signal.Signals(interrupted).name
                await _finish(client, job.job_id, "cancel", None, notice)
                notice(f"job {job.job_id} cancelled ({name})")
                return 128 + interrupted
            if returncode == 0:
                await _finish(client, job.job_id, "complete", {"exitCode": 0}, notice)
                notice(f"job {job.job_id} completed")
                return 0
            error = exit_description(returncode)
            if tail:
                error = f"{error}: {tail}"
            await _finish(client, job.job_id, "fail", error, notice)
            notice(f"job {job.job_id} failed ({exit_description(returncode)})")
            return returncode if returncode > 0 else 128 - returncode


def _piped(stream: trio.abc.ReceiveStream | None) -> trio.abc.ReceiveStream:
    """One of the command's output streams (it was started with ``PIPE`` for both)."""
    assert stream is not None
    return stream


TIME_LEFT_INTERVAL = 5.0
"""Seconds between two ``progress-sync: 42.0% · about 3 min left`` lines on stderr."""


class _TimeLeft:
    """The command's time left, by the store's own algorithm (``RateState``) over the progress
    found in its output, told through ``notice`` at most every ``TIME_LEFT_INTERVAL`` s."""

    def __init__(self, notice: Notice) -> None:
        self._notice = notice
        self._state = RateState()
        self._next = trio.current_time()

    def update(self, percent: float) -> None:
        self._state = self._state.advance(percent, wall_clock())
        now = trio.current_time()
        if now < self._next:
            return
        left = format_time_left(self._state.published(percent)[1])
        if left is not None:
            self._next = now + TIME_LEFT_INTERVAL
            self._notice(f"{percent:.1f}% · {left}")


async def _supervise(  # noqa: C901  # the nested tasks share the process and its signals
    process: trio.Process,
    client: AsyncProgressClient,
    job_id: str,
    default_stage: str,
    parser: OutputProgressParser,
    signals: AsyncIterator[int],
    out: BinaryIO,
    err: BinaryIO,
    time_left: _TimeLeft,
) -> tuple[int | None, int, str]:
    """Copy the output, report progress, stop the command on a signal; wait for it to end."""
    interrupted: int | None = None
    streams = (
        (_piped(process.stdout), _Output("stdout", out, keep_tail=False)),
        (_piped(process.stderr), _Output("stderr", err, keep_tail=True)),
    )

    def report(found: ParsedProgress | None) -> None:
        if found is not None:
            client.report_nowait(job_id, found.percent, found.stage or default_stage, found.message)
            time_left.update(found.percent)

    async def pump(stream: trio.abc.ReceiveStream, output: _Output) -> None:
        while received := await stream.receive_some(65536):
            chunk = bytes(received)  # the same object when it is bytes already
            output.write(chunk)
            report(parser.feed(output.name, chunk))
        report(parser.close(output.name))

    async def stop(signum: int) -> None:
        # Ctrl-C reaches the whole foreground process group, the command included: give it
        # the chance to stop by itself first. SIGTERM was meant for us alone: pass it on.
        if signum == signal.SIGINT:
            with trio.move_on_after(INTERRUPT_GRACE):
                await process.wait()
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(TERMINATE_GRACE):
                await process.wait()
        if process.returncode is None:
            process.kill()

    async def watch(nursery: trio.Nursery) -> None:
        nonlocal interrupted
        async for signum in signals:
            if interrupted is None:
                interrupted = signum
                nursery.start_soon(stop, signum)
            elif process.returncode is None:
                process.kill()  # a second Ctrl-C: stop now

    try:
        async with trio.open_nursery() as outer:
            outer.start_soon(watch, outer)
            async with trio.open_nursery() as pumps:
                for stream, output in streams:
                    pumps.start_soon(pump, stream, output)
            returncode = await process.wait()
            outer.cancel_scope.cancel()
    except BaseException:
        if process.returncode is None:
            process.kill()
        raise
    tail = stderr_tail(bytes(streams[1][1].tail or b""))
    return interrupted, returncode, tail


async def _finish(
    client: AsyncProgressClient, job_id: str, action: str, value: object, notice: Notice
) -> None:
    """End the job; one that has ended already (cancelled by someone else) is left as it is."""
    try:
        if action == "complete":
            await client.complete(job_id, value)
        elif action == "fail":
            await client.fail(job_id, str(value))
        else:
            await client.cancel(job_id)
    except (JobFinishedError, JobNotFoundError) as exc:
        notice(f"job not ended by this run: {exc}")
