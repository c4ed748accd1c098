"""The test kit as users get it: the installed ``pytest11`` entry point, in a fresh pytest.

Each test runs pytest in a subprocess (``pytester.runpytest_subprocess``) in an empty
directory with no conftest, so the fixtures can only come from the installed plugin. The
example test files are the README's, so the README's example is known to pass.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = re.compile(r"<!-- test-kit-example: (\S+) -->\s*```python\n(.*?)```", re.DOTALL)
TRIO_MODE = "[tool.pytest.ini_options]\ntrio_mode = true\n"

BUGGY_USER_TESTS = """
import trio
from progress_sync.testing import assert_stream_well_formed, collect_snapshots


async def export(buffer, job_id):
    for percent in (10, 50, 90):
        buffer.report_nowait(job_id, percent=percent, stage="render")
        await trio.sleep(1)
    # the bug: the job never ends


async def test_buggy_export(progress_store, progress_buffer, nursery, autojump_clock):
    await progress_store.register("job")
    nursery.start_soon(export, progress_buffer, "job")
    assert_stream_well_formed(await collect_snapshots(progress_store, "job"))


async def test_real_server_in_virtual_time(progress_server, autojump_clock):
    pass
"""


def readme_examples() -> dict[str, str]:
    """The README's example test files: ``{file name: code}``."""
    return dict(EXAMPLE.findall(README.read_text(encoding="utf-8")))


def write_examples(pytester: pytest.Pytester) -> None:
    examples = readme_examples()
    assert set(examples) == {"test_export.py", "test_backpressure.py"}
    pytester.makepyfile(**{name.removesuffix(".py"): code for name, code in examples.items()})
    pytester.makepyprojecttoml(TRIO_MODE)


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    (entry_point,) = importlib.metadata.entry_points(group="pytest11", name="progress_sync")
    assert entry_point.value == "progress_sync.testing"
    assert entry_point.dist is not None
    assert entry_point.dist.name == "progress-sync"


@pytest.mark.slow
def test_the_readme_examples_pass_with_the_installed_plugin(pytester: pytest.Pytester):
    write_examples(pytester)
    pytester.makepyfile(test_buggy=BUGGY_USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=2, warnings=0)
    version = re.escape(importlib.metadata.version("progress-sync"))
    result.stdout.re_match_lines([rf"plugins: .*progress-sync-{version}"])
    result.stdout.fnmatch_lines(
        [
            "*WaitTimeoutError: job 'job' did not reach a terminal state within *",
            "*progress_server runs a real server on real sockets, and the autojump clock "
            "would jump virtual time*",
        ]
    )


@pytest.mark.slow
def test_with_autoload_disabled_the_plugin_is_named_with_p(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    write_examples(pytester)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_inprocess("-p", "trio", "-p", "progress_sync.testing")
    result.assert_outcomes(passed=4)


def test_without_the_plugin_the_fixtures_are_missing(pytester: pytest.Pytester):
    write_examples(pytester)
    result = pytester.runpytest_inprocess("-p", "no:progress_sync", "test_backpressure.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'progress_client' not found*"])


@pytest.mark.slow
def test_the_pipeline_half_does_not_import_the_server():
    code = (
        "import sys, progress_sync.testing\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('progress_sync.server'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


PIPELINE_ONLY_TEST = """
import sys

from progress_sync.testing import collect_snapshots

SERVER_STACK = ("quart", "hypercorn", "quart_schema", "prometheus_client", "coredis")


def loaded_server_stack():
    return sorted(m for m in sys.modules if m.split(".")[0] in SERVER_STACK)


async def test_pipeline_fixtures_leave_the_server_stack_unloaded(
    progress_store, progress_buffer, autojump_clock
):
    await progress_store.register("job")
    progress_buffer.report_nowait("job", percent=50, stage="half")
    await progress_buffer.finish("job", "completed")
    assert [s.percent for s in await collect_snapshots(progress_store, "job")] == [100.0]
    assert loaded_server_stack() == []


async def test_a_server_fixture_loads_it(progress_client):
    assert "quart" in loaded_server_stack()
"""


@pytest.mark.slow
def test_the_plugin_imports_the_server_stack_only_for_server_fixtures(pytester: pytest.Pytester):
    pytester.makepyfile(test_pipeline_only=PIPELINE_ONLY_TEST)
    pytester.makepyprojecttoml(TRIO_MODE)
    # In a subprocess: this suite's own process has imported the server stack long ago.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:pytester")
    result.assert_outcomes(passed=2)
