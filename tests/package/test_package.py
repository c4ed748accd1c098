"""The packages' public surface and boundaries."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import progress_sync
import progress_sync.client
import progress_sync.server
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", [progress_sync, progress_sync.client, progress_sync.server])
def test_all_lists_exactly_the_public_names(package):
    lazy = getattr(package, "_LAZY_NAMES", frozenset())  # loaded on first use
    public = {name for name in vars(package) if not name.startswith("_")} | lazy
    modules = {name for name in public if type(getattr(package, name)).__name__ == "module"}
    assert sorted(package.__all__) == sorted(public - modules)


# The program's entry point (``python -m progress_sync``) runs the server's command line; the
# test kit's plugin imports the server kit inside its server fixtures only (tested in
# test_kit_plugin.py). Neither is imported by the library itself.
ALLOWED_TO_REACH_THE_SERVER = {"__main__.py", "testing"}
"""The command, and the test kit (whose server fixtures and names load the server lazily)."""


def test_pipeline_never_imports_server():
    for path in (ROOT / "pipeline").rglob("*.py"):
        relative = path.relative_to(ROOT / "pipeline")
        if relative.parts[0] in ALLOWED_TO_REACH_THE_SERVER or relative.name in (
            ALLOWED_TO_REACH_THE_SERVER
        ):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            server = ("server", "progress_sync.server")
            assert not any(n in server or n.startswith(server) for n in names), path


SERVER_STACK = ("quart", "hypercorn", "quart_schema", "prometheus_client", "coredis")
"""What a producer-only install must not need (the ``server`` and ``redis`` extras)."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "statement",
    [
        "import progress_sync",
        "from progress_sync import open_update_buffer, open_thread_reporter, ReportingTqdm",
        "from progress_sync.client import ProgressClient, open_progress_client",
        "import progress_sync.testing",
    ],
)
def test_the_core_and_the_client_leave_the_server_stack_unloaded(statement):
    code = (
        f"import sys; {statement}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_STACK!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_redis_names_are_loaded_on_first_use():
    assert progress_sync.RedisStore.__module__ == "progress_sync._redis_store"
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = progress_sync.NoSuchName


@pytest.mark.slow
def test_python_dash_m_progress_sync_is_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "progress_sync", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout
    assert "demo" in done.stdout


def run_without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing ``modules`` fails, as it does in an
    install without the extra that brings them."""
    block = "".join(f"sys.modules[{name!r}] = None; " for name in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys; {block}\n{code}"], capture_output=True, text=True
    )


def test_the_redis_store_without_its_extra_says_which_to_install():
    done = run_without(("coredis",), "import progress_sync; progress_sync.RedisStore")
    assert done.returncode == 1
    assert (
        "MissingExtraError: the Redis store needs the 'redis' extra (import of coredis halted; "
        "None in sys.modules): pip install 'progress-sync[redis]'"
    ) in done.stderr


def test_the_client_without_its_extra_says_which_to_install():
    done = run_without(("httpx",), "import progress_sync.client")
    assert "pip install 'progress-sync[client]'" in done.stderr


def test_serve_without_the_server_extra_says_which_to_install():
    code = "from progress_sync.__main__ import main; sys.argv = ['progress-sync', 'serve']; main()"
    done = run_without(("quart", "hypercorn"), code)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: progress-sync serve needs the 'server' extra")
    assert "pip install 'progress-sync[server]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_without_the_client_extra_says_which_to_install():
    code = "from progress_sync.__main__ import main; sys.argv = ['progress-sync', '--help']; main()"
    done = run_without(("click",), code)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: the progress-sync command needs the 'client' extra")


def test_deprecated_names_are_the_new_ones_for_one_release():
    # CHANGELOG.md, "Deprecated": the old names still work, as the very same objects.
    from progress_sync import ThreadReporter
    from progress_sync.client import ProgressClient

    assert progress_sync.BufferClosedError is progress_sync.SinkClosedError
    assert ProgressClient.report is ProgressClient.report_nowait
    assert ThreadReporter.report is ThreadReporter.report_nowait
    assert issubclass(progress_sync.InvalidUpdateError, progress_sync.InvalidFieldError)
