"""Settings validation, admission bookkeeping and Last-Event-ID parsing."""

from __future__ import annotations

import pytest
from progress_sync.server import ServerConfig
from progress_sync.server._errors import ShuttingDownError, TooManySubscribersError
from progress_sync.server.sse._admission import StreamHub, spread_retry_ms
from progress_sync.server.sse._resume import (
    format_seq_vector,
    last_event_id,
    parse_seq,
    parse_seq_vector,
)
from progress_sync.server.sse._routes import parse_job_ids


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"send_timeout": 0}, "send_timeout must be a positive number of seconds"),
        ({"keep_alive_timeout": -1}, "keep_alive_timeout must be a positive number of seconds"),
        ({"graceful_timeout": float("inf")}, "graceful_timeout must be a positive number"),
        ({"max_subscribers": 0}, "max_subscribers must be a whole number >= 1"),
        ({"max_stream_jobs": 1.5}, "max_stream_jobs must be a whole number >= 1"),
        ({"max_body_bytes": True}, "max_body_bytes must be a whole number >= 1"),
        ({"shutdown_retry_spread_ms": -1}, "shutdown_retry_spread_ms must be a whole number >= 0"),
        ({"cors_origins": "https://a.example"}, "cors_origins must be a tuple of origins"),
        ({"cors_origins": ("a.example",)}, "'a.example' is no origin; write scheme://host"),
        ({"cors_origins": ("https://a.example/path",)}, "is no origin"),
    ],
)
def test_bad_settings_are_refused_naming_them(changes, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**changes)


def test_origins_are_kept_without_a_trailing_slash():
    config = ServerConfig(cors_origins=("https://a.example/", "http://localhost:5173", "*"))
    assert config.cors_origins == ("https://a.example", "http://localhost:5173", "*")


def test_admission_is_bounded_released_once_and_closed_at_shutdown():
    hub = StreamHub()
    scopes = [{}, {}]
    hub.admit(scopes[0], limit=2, retry_after=1)
    hub.admit(scopes[0], limit=2, retry_after=1)  # the same request counts once
    hub.admit(scopes[1], limit=2, retry_after=1)
    with pytest.raises(TooManySubscribersError, match="maximum of 2 open streams; retry in 4 s"):
        hub.admit({}, limit=2, retry_after=4)
    hub.release(scopes[0])
    hub.release(scopes[0])
    assert hub.admitted == 1
    hub.close()
    with pytest.raises(ShuttingDownError, match="shutting down; retry in 3 s"):
        hub.admit({}, limit=2, retry_after=3)


def test_spread_retry_stays_in_its_window():
    values = {spread_retry_ms(2000, 100) for _ in range(500)}
    assert min(values) >= 2000
    assert max(values) <= 2100
    assert len(values) > 50
    assert spread_retry_ms(2000, 0) == 2000


def test_last_event_id_prefers_the_header():
    assert last_event_id("5", "3") == "5"
    assert last_event_id(None, "3") == "3"
    assert last_event_id("", "") is None


@pytest.mark.parametrize(
    ("value", "seq"),
    [("7", 7), (" 7 ", 7), ("0", 0), ("x", None), ("-1", None), ("", None), (None, None)],
)
def test_parse_seq(value, seq):
    assert parse_seq(value) == seq


def test_seq_vectors_round_trip_and_refuse_the_wrong_length():
    assert parse_seq_vector(format_seq_vector([3, 0, 12]), 3) == [3, 0, 12]
    assert parse_seq_vector("3,0", 3) is None
    assert parse_seq_vector("3,x,1", 3) is None
    assert parse_seq_vector(None, 1) is None


def test_parse_job_ids_raises_naming_jobIds():
    assert parse_job_ids("a, b,a", 5) == ["a", "b"]
    with pytest.raises(ValueError, match="jobIds: at most 1 jobs per stream, got 2"):
        parse_job_ids("a,b", 1)
    with pytest.raises(ValueError, match=r"jobIds: id 1 \('\$'\) must be"):
        parse_job_ids("$", 5)
