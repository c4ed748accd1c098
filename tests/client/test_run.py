"""``progress-sync run`` end to end: a real server on loopback, real commands in real processes.

The job is followed through the server's store (a subscription, event-driven); the commands
(a tqdm loop, plain percentages, ffmpeg encoding a generated clip) take about a second each.
Their own sleeps are their workload; the test never sleeps to wait for anything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from _external import missing
from progress_sync import JobSnapshot, MemoryStore
from progress_sync.server.testing import ProgressServer, start_progress_server

REPO = Path(__file__).resolve().parents[2]
PROGRESS_SYNC = [sys.executable, "-c", "from progress_sync.server._cli import main; main()"]
FFMPEG_CLIP = ["-f", "lavfi", "-i", "testsrc=duration=5:size=320x240:rate=25"]


def require_ffmpeg() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        missing("ffmpeg", "sudo apt-get install -y ffmpeg")
    return ffmpeg  # type: ignore[return-value]


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


async def follow(store: MemoryStore, job_id: str, into: list[JobSnapshot], seen: trio.Event):
    """Collect every snapshot of the job until its terminal state."""
    await store.wait_registered(job_id, 60)
    async with store.subscribe(job_id) as subscription:
        async for snapshot in subscription:
            into.append(snapshot)
            if snapshot.percent > 0:
                seen.set()


async def run(
    server: ProgressServer, job_id: str, command: list[str], *options: str
) -> tuple[subprocess.CompletedProcess, list[JobSnapshot]]:
    """Run ``progress-sync run`` for ``command``; returns the process and the job's snapshots."""
    snapshots: list[JobSnapshot] = []
    argv = [
        *PROGRESS_SYNC,
        "run",
        "--server",
        server.base_url,
        "--job-id",
        job_id,
        "--flush-interval",
        "0.05",
        *options,
        "--",
        *command,
    ]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, server.store, job_id, snapshots, trio.Event())
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False, cwd=REPO
            )
            if result.returncode in (1, 2) and b"could not run the job" in result.stderr:
                nursery.cancel_scope.cancel()
    return result, snapshots


def progress_of(snapshots: list[JobSnapshot]) -> list[float]:
    return [s.percent for s in snapshots if s.status.value == "running"]


@pytest.mark.slow
async def test_a_python_tqdm_loop_is_followed_live(progress_server, tmp_path):
    command = script(
        tmp_path,
        "train.py",
        """
        import time
        from tqdm import tqdm
        for _ in tqdm(range(40), desc="train"):
            time.sleep(0.02)
        print("model saved")
        """,
    )
    result, snapshots = await run(progress_server, "tqdm-run", command)
    assert result.returncode == 0, result.stderr
    # The command's own output reaches our terminal: the bar on stderr, its print on stdout.
    assert b"train: 100%|" in result.stderr
    assert b"\r" in result.stderr
    assert result.stdout == b"model saved\n"
    assert b"progress-sync: job tqdm-run: http://" in result.stderr
    live = progress_of(snapshots)
    assert live == sorted(live)
    assert len({p for p in live if 0 < p < 100}) >= 3
    final = snapshots[-1]
    assert (final.status.value, final.percent, final.stage) == ("completed", 100.0, "train")
    assert final.result == {"exitCode": 0}


@pytest.mark.slow
async def test_plain_percentages_on_stdout_are_followed(progress_server, tmp_path):
    command = script(
        tmp_path,
        "copy.py",
        """
        import time
        for i in range(0, 101, 10):
            print(f"copied {i}% of the files")
            time.sleep(0.05)
        """,
    )
    result, snapshots = await run(progress_server, "percent-run", command, "--stage", "copy")
    assert result.returncode == 0
    assert result.stdout.count(b"% of the files") == 11
    live = progress_of(snapshots)
    assert live == sorted(live)
    assert len({p for p in live if 0 < p < 100}) >= 3
    assert {s.stage for s in snapshots} == {"copy"}
    assert snapshots[-1].status.value == "completed"


@pytest.mark.slow
async def test_run_prints_the_time_left_and_gives_the_job_a_lease(progress_server, tmp_path):
    command = script(
        tmp_path,
        "steady.py",
        """
        import time
        for i in range(31):
            print(f"{i * 2}%", flush=True)
            time.sleep(0.1)
        """,
    )
    result, snapshots = await run(progress_server, "eta-run", command, "--heartbeat-timeout", "45")
    assert result.returncode == 0, result.stderr
    assert re.search(rb"progress-sync: \d+\.\d% \xc2\xb7 about \d+ s left", result.stderr), (
        result.stderr
    )
    assert snapshots[0].heartbeat_timeout == 45.0
    assert any(s.eta_seconds is not None for s in snapshots if s.status.value == "running")


@pytest.mark.slow
async def test_a_command_exiting_nonzero_fails_the_job_with_its_stderr_tail(
    progress_server, tmp_path
):
    command = script(
        tmp_path,
        "broken.py",
        """
        import sys
        print("loading 30%", flush=True)
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ValueError: bad input in row 7", file=sys.stderr)
        sys.exit(3)
        """,
    )
    result, snapshots = await run(progress_server, "broken-run", command)
    assert result.returncode == 3
    assert b"ValueError: bad input in row 7" in result.stderr
    final = snapshots[-1]
    assert final.status.value == "failed"
    assert final.error == (
        "exit code 3: Traceback (most recent call last):\nValueError: bad input in row 7"
    )
    assert final.percent == 30.0  # where it stopped


@pytest.mark.slow
async def test_a_command_killed_by_a_signal_fails_the_job(progress_server):
    result, snapshots = await run(progress_server, "killed-run", ["sh", "-c", "kill -9 $$"])
    assert result.returncode == 128 + 9
    assert snapshots[-1].error == "killed by signal SIGKILL"


@pytest.mark.slow
async def test_a_command_that_cannot_be_found_fails_the_job(progress_server):
    result, snapshots = await run(progress_server, "nowhere", ["no-such-program-xyz", "--help"])
    assert result.returncode == 127
    assert snapshots[-1].status.value == "failed"
    assert "could not start no-such-program-xyz" in snapshots[-1].error


@pytest.mark.slow
@pytest.mark.ffmpeg
async def test_ffmpeg_encoding_a_clip_with_t_is_followed(progress_server, tmp_path):
    ffmpeg = require_ffmpeg()
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-y", "-readrate", "5", *FFMPEG_CLIP, "-t", "5",
        "-progress", "pipe:1", "-stats_period", "0.1", "-c:v", "mpeg4", str(tmp_path / "a.mp4"),
    ]  # fmt: skip
    result, snapshots = await run(progress_server, "ffmpeg-t", command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"progress=end" in result.stdout  # ffmpeg's own output still reaches stdout
    live = progress_of(snapshots)
    assert live == sorted(live)
    assert len({p for p in live if 0 < p < 100}) >= 3
    final = snapshots[-1]
    assert (final.status.value, final.percent, final.stage) == ("completed", 100.0, "ffmpeg")
    assert (tmp_path / "a.mp4").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.ffmpeg
async def test_ffmpeg_progress_uses_its_duration_line_without_t(progress_server, tmp_path):
    ffmpeg = require_ffmpeg()
    clip = tmp_path / "clip.mp4"
    await trio.run_process(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-y", *FFMPEG_CLIP, "-c:v", "mpeg4", str(clip)]
    )
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-y", "-readrate", "5", "-i", str(clip),
        "-progress", "pipe:1", "-stats_period", "0.1", "-c:v", "mpeg4", str(tmp_path / "b.mp4"),
    ]  # fmt: skip
    result, snapshots = await run(progress_server, "ffmpeg-duration", command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"Duration: 00:00:05.00" in result.stderr
    live = progress_of(snapshots)
    assert live == sorted(live)
    assert len({p for p in live if 0 < p < 100}) >= 3
    assert snapshots[-1].status.value == "completed"


@pytest.mark.slow
@pytest.mark.ffmpeg
async def test_ffmpeg_failing_fails_the_job_with_ffmpegs_message(progress_server, tmp_path):
    ffmpeg = require_ffmpeg()
    command = [ffmpeg, "-nostdin", "-hide_banner", "-i", str(tmp_path / "missing.mp4"), "x.mp4"]
    result, snapshots = await run(progress_server, "ffmpeg-fail", command)
    assert result.returncode != 0
    assert snapshots[-1].status.value == "failed"
    assert "No such file or directory" in snapshots[-1].error


@pytest.mark.slow
async def test_ctrl_c_cancels_the_job(progress_server, tmp_path):
    command = script(
        tmp_path,
        "forever.py",
        """
        import time
        for i in range(1000):
            print(f"{i / 10:.1f}%")
            time.sleep(0.02)
        """,
    )
    argv = [*PROGRESS_SYNC, "run", "--server", progress_server.base_url, "--job-id", "ctrl-c",
            "--flush-interval", "0.05", "--", *command]  # fmt: skip
    snapshots: list[JobSnapshot] = []
    moving = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, progress_server.store, "ctrl-c", snapshots, moving)
            # Its own session, like a terminal's foreground job: Ctrl-C reaches the whole group.
            process = await trio.lowlevel.open_process(
                argv, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                await moving.wait()
                os.killpg(process.pid, signal.SIGINT)
                stderr = b""
                while chunk := await process.stderr.receive_some(1 << 20):  # type: ignore[union-attr]
                    stderr += chunk
                await process.wait()
            finally:
                if process.returncode is None:  # pragma: no cover - only when the test fails
                    os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    assert b"job ctrl-c cancelled (SIGINT)" in stderr
    final = snapshots[-1]
    assert final.status.value == "cancelled"
    assert 0 < final.percent < 100


@pytest.mark.slow
async def test_a_refused_token_stops_before_running_the_command(
    nursery, progress_server_config, tmp_path
):
    server = await start_progress_server(
        nursery, replace(progress_server_config, producer_token="t" * 24)
    )
    marker = tmp_path / "ran"
    result = await trio.run_process(
        [*PROGRESS_SYNC, "run", "--server", server.base_url, "--token", "wrong",
         "--", "touch", str(marker)],
        capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1
    assert b"could not run the job" in result.stderr
    assert b"401 unauthorized" in result.stderr
    assert b"wrong" not in result.stderr
    assert not marker.exists()
    token_file = tmp_path / "token"
    token_file.write_text("t" * 24 + "\n")
    ok = await trio.run_process(
        [*PROGRESS_SYNC, "run", "--server", server.base_url, "--token-file", str(token_file),
         "--quiet", "--", "touch", str(marker)],
        capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == b""
    assert marker.exists()
    server.stop.set()


@pytest.mark.slow
async def test_run_needs_a_command_and_a_server():
    result = await trio.run_process(
        [*PROGRESS_SYNC, "run", "--server", "http://127.0.0.1:1"],
        capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert b"Missing argument 'COMMAND...'" in result.stderr
    unreachable = await trio.run_process(
        [*PROGRESS_SYNC, "run", "--server", "http://127.0.0.1:1", "--", "true"],
        capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert b"could not be reached" in unreachable.stderr


@pytest.mark.parametrize("flag", ["--job-id", "--stage"])
def test_run_help_lists_its_options(flag):
    from click.testing import CliRunner
    from progress_sync.server._cli import main

    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    assert flag in result.output
