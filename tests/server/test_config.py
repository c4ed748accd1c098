"""Server settings are validated with messages that name the setting."""

from __future__ import annotations

import pytest
from progress_sync import SyncMode
from progress_sync.server import ServerConfig


def test_defaults():
    config = ServerConfig()
    assert (config.host, config.port, config.sync_mode, config.flush_interval) == (
        "127.0.0.1",
        8000,
        SyncMode.BATCHED,
        0.5,
    )
    assert (config.registration_timeout, config.retry_ms, config.heartbeat_interval) == (
        20,
        2000,
        15,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 70000}, "port must be from 0 to 65535"),
        ({"flush_interval": 0}, "flush_interval must be a number of seconds from 0.001 up"),
        ({"registration_timeout": float("nan")}, "registration_timeout must be a positive number"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs must be a whole number >= 1"),
        ({"retry_ms": 1.5}, "retry_ms must be a whole number >= 1"),
        ({"sync_mode": "fast"}, "'fast' is not a valid SyncMode"),
    ],
)
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**changes)


def test_unknown_settings_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument 'flush_intervall'"):
        ServerConfig(flush_intervall=1)  # type: ignore[call-arg]
