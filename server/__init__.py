"""progress-sync's HTTP server: the SSE endpoint and the JSON API, Quart-Trio under Hypercorn.

Needs the ``server`` extra. The names below are imported on first use, so that the
``progress-sync`` command (whose ``run`` subcommand needs only the ``client`` extra) can load
this package's settings and command line without Quart and Hypercorn.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._config import ServerConfig as ServerConfig

if _TYPE_CHECKING:
    from ._app import create_app as create_app
    from ._serve import serve as serve
    from ._serve import serve_services as serve_services
    from ._services import Services as Services
    from ._services import open_services as open_services
    from .sse._framing import format_event as format_event
    from .sse._framing import snapshot_event as snapshot_event

_LAZY_MODULES = {
    "Services": "_services",
    "create_app": "_app",
    "open_services": "_services",
    "serve": "_serve",
    "serve_services": "_serve",
    "format_event": "sse._framing",
    "snapshot_event": "sse._framing",
}
"""Names imported on first use, and their modules."""

_LAZY_NAMES = frozenset(_LAZY_MODULES)


def __getattr__(name: str) -> _Any:
    if name in _LAZY_MODULES:
        from importlib import import_module

        from progress_sync._extras import needs_extra

        with needs_extra("server", "progress_sync.server"):
            return getattr(import_module(f".{_LAZY_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ServerConfig",
    "Services",
    "create_app",
    "format_event",
    "open_services",
    "serve",
    "serve_services",
    "snapshot_event",
]
