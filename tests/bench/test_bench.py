"""bench/: its settings, its errors and its wiring into the command line.

Performance is never asserted here: the figures are measured by running the bench. Tests that
start a server process use the real clock on 127.0.0.1 and end the process before returning.
"""

from __future__ import annotations

import gc
import math
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from progress_sync.bench import Plan, StreamWorkload, System, Workload
from progress_sync.bench._cli import build_plan, require
from progress_sync.bench._http_load import IngestUnavailableError, run_http
from progress_sync.bench._processes import ServerStartError, module_argv, open_server_process
from progress_sync.bench._results import Percentiles
from progress_sync.bench._stream import run_stream
from progress_sync.server._cli import main
from progress_sync.server._gc import GC_THRESHOLDS, tune_garbage_collector


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jobs": 0}, r"jobs must be a whole number >= 1, not 0"),
        ({"subscribers": 1.5}, r"subscribers must be a whole number >= 1, not 1\.5"),
        ({"rate": 0}, r"rate must be a positive finite number, not 0"),
        ({"duration": math.inf}, r"duration must be a positive finite number, not inf"),
        ({"flush_interval": True}, r"flush_interval must be a positive finite number, not True"),
    ],
)
def test_workload_refuses_bad_knobs(changes, message):
    with pytest.raises(ValueError, match=message):
        Workload(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"connections": 0}, r"connections must be a whole number >= 1, not 0"),
        ({"connections": 10, "jobs": 20}, r"jobs \(20\) must not exceed connections \(10\)"),
        ({"duration": -1}, r"duration must be a positive finite number, not -1"),
    ],
)
def test_stream_workload_refuses_bad_knobs(changes, message):
    with pytest.raises(ValueError, match=message):
        StreamWorkload(**changes)


def test_plan_refuses_zero_rounds():
    with pytest.raises(ValueError, match=r"rounds must be a whole number >= 1, not 0"):
        Plan(rounds=0)


def test_percentiles_are_nearest_rank_in_milliseconds():
    summary = Percentiles.of_seconds([i / 1000 for i in range(1, 101)])
    assert (summary.count, summary.p50, summary.p95, summary.p99, summary.max) == (
        100,
        50.0,
        95.0,
        99.0,
        100.0,
    )
    assert math.isnan(Percentiles.of_seconds([]).p99)


def test_command_line_knobs_make_a_grid_at_the_chosen_levels():
    plan = build_plan(
        quick=True,
        levels=("inprocess", "stream"),
        jobs=(2, 4),
        rates=(10.0,),
        subscribers=(1,),
        duration=0.5,
        flush_interval=0.1,
        connections=8,
        rounds=2,
        reference=False,
    )
    assert [(w.jobs, w.rate, w.subscribers) for w in plan.inprocess] == [(2, 10.0, 1), (4, 10.0, 1)]
    assert all(w.duration == 0.5 and w.flush_interval == 0.1 for w in plan.inprocess)
    assert plan.http == ()
    assert plan.stream == StreamWorkload(connections=8, jobs=1, duration=0.5, flush_interval=0.1)
    assert plan.rounds == 2
    assert plan.reference is False


def test_missing_bench_dependencies_say_how_to_install_them():
    with pytest.raises(
        click.ClickException, match=r"no_such_module_xyz: pip install 'progress-sync\[bench\]'"
    ):
        require(("psutil", "no_such_module_xyz"))


@pytest.mark.slow
def test_progress_sync_lists_bench_without_importing_it_at_start_up():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "bench" in result.output
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, server._cli; print('bench' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"
    help_text = CliRunner().invoke(main, ["bench", "--help"])
    assert help_text.exit_code == 0
    assert "--quick" in help_text.output


async def test_a_server_that_never_listens_is_reported_with_its_output():
    argv = [sys.executable, "-c", "print('no port for you')"]
    with pytest.raises(ServerStartError, match=r"did not start listening(.|\n)*no port for you"):
        async with open_server_process(argv):
            pass


async def test_http_level_needs_the_ingest_api():
    # The raw broadcaster has no /api/jobs: registering the first job is refused.
    async with open_server_process(module_argv("progress_sync.bench._raw_asgi")) as server:
        with pytest.RaisesGroup(
            pytest.RaisesExc(
                IngestUnavailableError, match=r"POST /api/jobs without kind answered 404"
            ),
            flatten_subgroups=True,
        ):
            await run_http(server, Workload(jobs=1, rate=10, subscribers=1), System.BATCHED)


async def test_stream_level_reports_connections_that_did_not_open_in_time():
    workload = StreamWorkload(connections=50, jobs=1, duration=0.1)
    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match=r"only \d+ of 50 connections opened in 0 s"),
        flatten_subgroups=True,
    ):
        await run_stream(System.RAW_ASGI, workload, connect_timeout=0)


async def test_stream_level_compares_only_batched_and_raw_asgi():
    with pytest.raises(ValueError, match=r"compares batched and raw-asgi, not direct"):
        await run_stream(System.DIRECT, StreamWorkload(connections=1, jobs=1))


def test_serving_processes_collect_garbage_less_often():
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
