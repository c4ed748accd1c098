"""The wheel as a user gets it: built from this checkout, installed into a fresh virtual
environment next to a project that has its own ``server`` package and ``pipeline.py``.

Slow (a wheel build and an install of the ``server`` and ``testing`` extras into a new venv,
from pip's cache after the first run): marked ``slow``; CI runs it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

USER_FILES = {
    # Two of the most common names in Python projects: progress-sync must neither shadow them
    # nor be shadowed by them.
    "server/__init__.py": "NAME = 'the user project server'\n",
    "server/testing.py": "HELPER = 'the user project server.testing'\n",
    "pipeline.py": "def run():\n    return 'the user project pipeline'\n",
    "pyproject.toml": "[tool.pytest.ini_options]\ntrio_mode = true\n",
    "tests/test_user.py": textwrap.dedent(
        """
        import sys

        import pipeline
        import server
        import server.testing
        from progress_sync.testing import collect_snapshots


        def test_own_modules_are_theirs():
            assert server.NAME == "the user project server"
            assert server.testing.HELPER == "the user project server.testing"
            assert pipeline.run() == "the user project pipeline"


        async def test_kit_fixture(progress_store, progress_buffer, autojump_clock):
            await progress_store.register("job")
            progress_buffer.report_nowait("job", percent=40, stage="render")
            await progress_buffer.finish("job", "completed")
            snapshots = await collect_snapshots(progress_store, "job")
            assert snapshots[-1].status.value == "completed"
            assert "quart" not in sys.modules  # the server stack is not loaded for this


        async def test_server_fixture(progress_client):
            response = await progress_client.post("/api/jobs", json={"kind": "demo"})
            assert response.status_code == 201
        """
    ),
}


def run(argv: list[str | Path], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT], cwd=out)
    (built,) = out.glob("progress_sync-*.whl")
    return built


def test_the_wheel_holds_only_progress_sync(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    (dist_info,) = {t for t in top if t.endswith(".dist-info")}
    assert top - {dist_info} == {"progress_sync"}
    assert "progress_sync/server/static/index.html" in names
    assert "progress_sync/py.typed" in names
    # Every package folder of the checkout is in the wheel (pyproject's list is explicit).
    folders = {
        "pipeline": "progress_sync",
        "server": "progress_sync/server",
        "bench": "progress_sync/bench",
    }
    for folder, package in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            inside = init.relative_to(ROOT / folder).as_posix()
            assert f"{package}/{inside}" in names, f"{init} is missing from the wheel"
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "progress_sync = progress_sync.testing" in entry_points


def test_a_user_project_with_its_own_server_package_passes_its_tests(wheel: Path, tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", f"{wheel}[server,testing]"], cwd=tmp_path)
    project = tmp_path / "project"
    for name, text in USER_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    # The user's own packages are found from the project's root, as pytest's rootdir and
    # `python -m pytest` put it on sys.path.
    out = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
    assert "3 passed" in out
    assert "progress-sync" in run([python, "-m", "progress_sync", "--help"], cwd=project)


def test_a_producer_only_install_does_not_pull_the_server_stack(wheel: Path, tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", f"{wheel}[client]"], cwd=tmp_path)
    code = (
        "import importlib.util as u; from progress_sync.client import ProgressClient; "
        "print(sorted(m for m in ('quart', 'hypercorn', 'quart_schema', 'prometheus_client', "
        "'coredis') if u.find_spec(m)))"
    )
    assert run([python, "-c", code], cwd=tmp_path).strip() == "[]"
