"""Mapping external status names to job states."""

from __future__ import annotations

import pytest
from progress_sync import JobStatus, UnknownStatusError, parse_status


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Pending", JobStatus.QUEUED),
        ("QUEUED", JobStatus.QUEUED),
        ("Running", JobStatus.RUNNING),
        ("InProgress", JobStatus.RUNNING),
        ("in_progress", JobStatus.RUNNING),
        ("in-progress", JobStatus.RUNNING),
        ("Succeeded", JobStatus.COMPLETED),
        ("Done", JobStatus.COMPLETED),
        ("completed", JobStatus.COMPLETED),
        ("Failed", JobStatus.FAILED),
        ("Error", JobStatus.FAILED),
        ("Canceled", JobStatus.CANCELLED),
        ("Cancelled", JobStatus.CANCELLED),
        (JobStatus.RUNNING, JobStatus.RUNNING),
    ],
)
def test_external_names_map_in_any_case(name, expected):
    assert parse_status(name) is expected


def test_unknown_names_raise_a_clear_error():
    with pytest.raises(
        UnknownStatusError, match="unknown status 'Exploded'; use one of queued, running"
    ):
        parse_status("Exploded")
    with pytest.raises(UnknownStatusError, match="status must be a string, not int"):
        parse_status(3)  # type: ignore[arg-type]


def test_terminal_states():
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
