"""Settings are declared once, as ServerConfig's fields: the command line and the README's
table are made from them (or checked against them here), and their ranges agree with the
pipeline's own checks."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

import click
import pytest
import trio
from progress_sync import MemoryStore, SyncMode, open_job_runner, open_update_buffer
from progress_sync._buffer import MIN_FLUSH_INTERVAL
from progress_sync.server import ServerConfig
from progress_sync.server._cli import main
from progress_sync.server._config import Setting, option_name, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _options(command: str) -> dict[str, click.Option]:
    params = main.commands[command].params  # type: ignore[attr-defined]
    return {p.name: p for p in params if isinstance(p, click.Option)}


def test_every_setting_is_declared_with_its_default_and_range():
    for item in fields(ServerConfig):
        assert isinstance(item.metadata.get("setting"), Setting), item.name
        assert item.default is not MISSING, item.name


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_the_cli_options_are_the_config_fields(command):
    options = _options(command)
    for item in fields(ServerConfig):
        setting: Setting = item.metadata["setting"]
        if command not in setting.commands:
            assert item.name not in options, item.name
            continue
        option = options[item.name]
        assert option.opts == [option_name(item.name)]
        default = item.default.value if isinstance(item.default, SyncMode) else item.default
        if item.default not in (None, ()):
            assert option.default == default, item.name
        if setting.minimum is not None:
            assert option.type.min == setting.minimum, item.name  # type: ignore[attr-defined]


def test_the_readme_table_is_made_from_the_settings():
    readme = README.read_text(encoding="utf-8")
    table = settings_table()
    assert table in readme, (
        "README.md's settings table differs from ServerConfig's fields; replace it with "
        "the output of: python -c 'from progress_sync.server._config import settings_table; "
        'print(settings_table(), end="")\''
    )
    # every option of `serve` is in the table
    for option in _options("serve").values():
        assert re.search(rf"\| `{re.escape(option.opts[0])}` \|", readme), option.opts


async def test_ranges_agree_with_the_pipeline():
    # --max-queued-jobs 0 (no queue) is what open_job_runner accepts, so the server does too
    config = ServerConfig(max_queued_jobs=0)
    store = MemoryStore()
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={}, max_queued=config.max_queued_jobs),
    ):
        pass
    with pytest.raises(ValueError, match="max_queued must be a whole number >= 0"):
        async with open_job_runner(store, buffer, kinds={}, max_queued=-1):
            pass
    with pytest.raises(ValueError, match="max_queued_jobs must be a whole number >= 0"):
        ServerConfig(max_queued_jobs=-1)
    # the smallest flush interval the buffer takes is the server's smallest
    assert ServerConfig(flush_interval=MIN_FLUSH_INTERVAL).flush_interval == MIN_FLUSH_INTERVAL
    with pytest.raises(ValueError, match="flush_interval must be a number of seconds from"):
        ServerConfig(flush_interval=MIN_FLUSH_INTERVAL / 2)
    await trio.lowlevel.checkpoint()
