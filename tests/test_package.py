"""The packages' public surface and boundaries."""

from __future__ import annotations

import ast
import pathlib

import pytest

import pipeline
import pipeline.client
import server

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("package", [pipeline, pipeline.client, server])
def test_all_lists_exactly_the_public_names(package):
    public = {name for name in vars(package) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(package, name)).__name__ == "module"}
    assert sorted(package.__all__) == sorted(public - modules)


def test_pipeline_never_imports_server():
    for path in (ROOT / "pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "server" or n.startswith("server.") for n in names), path
