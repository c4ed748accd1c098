"""Tests that need an outside program (Redis, Chromium, ffmpeg) skip when it is missing,
with a message that says how to enable them, unless ``PROGRESS_SYNC_REQUIRE_EXTERNAL=1``
(set by ``.ci/run``) turns the skip into a failure."""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "PROGRESS_SYNC_REQUIRE_EXTERNAL"


def missing(what: str, how_to_enable: str) -> None:
    """Skip the current test because ``what`` is missing, or fail it when it is required.

    Args:
        what: what is missing ("Redis on 127.0.0.1:6379").
        how_to_enable: the command or step that provides it.
    """
    message = f"{what} is not available; to run this test: {how_to_enable}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 makes this test mandatory)")
    pytest.skip(message)
