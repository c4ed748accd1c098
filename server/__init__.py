"""progress-sync's HTTP server: the SSE endpoint and the JSON API, Quart-Trio under Hypercorn."""

from ._app import Services as Services
from ._app import create_app as create_app
from ._config import ServerConfig as ServerConfig
from ._serve import open_services as open_services
from ._serve import serve as serve
from ._serve import serve_services as serve_services
from ._sse import format_event as format_event
from ._sse import snapshot_event as snapshot_event

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
