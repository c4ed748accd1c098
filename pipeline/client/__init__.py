"""Progress clients for producers in other processes (httpx), and ``progress-sync run``.

``ProgressClient`` is the synchronous flavour (plain Python, threads), ``open_progress_client``
opens the trio flavour. Both batch their reports (latest per job) on a flush interval and end
jobs synchronously. Importing this package imports httpx (the ``client`` extra);
``progress_sync`` alone does not.
"""

from .._extras import needs_extra as _needs_extra

with _needs_extra("client", "progress_sync.client"):
    from ._async import AsyncClientJob as AsyncClientJob
    from ._async import AsyncProgressClient as AsyncProgressClient
    from ._async import open_progress_client as open_progress_client
    from ._common import DEFAULT_CLIENT_FLUSH_INTERVAL as DEFAULT_CLIENT_FLUSH_INTERVAL
    from ._common import ClientStatistics as ClientStatistics
    from ._common import RegisteredJob as RegisteredJob
    from ._parsers import OutputProgressParser as OutputProgressParser
    from ._parsers import ParsedProgress as ParsedProgress
    from ._parsers import parse_ffmpeg_duration as parse_ffmpeg_duration
    from ._run import run_command as run_command
    from ._sync import ClientJob as ClientJob
    from ._sync import ProgressClient as ProgressClient

__all__ = [
    "DEFAULT_CLIENT_FLUSH_INTERVAL",
    "AsyncClientJob",
    "AsyncProgressClient",
    "ClientJob",
    "ClientStatistics",
    "OutputProgressParser",
    "ParsedProgress",
    "ProgressClient",
    "RegisteredJob",
    "open_progress_client",
    "parse_ffmpeg_duration",
    "run_command",
]
