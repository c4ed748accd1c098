"""A testing option: refuse every SSE stream with 503, so clients must fall back to polling.

Turned on by ``ServerConfig(refuse_streams=True)`` (``--refuse-streams``). A browser's
EventSource that gets a status other than 200 "fails the connection": it fires ``error``, turns
``CLOSED`` and never reconnects (WHATWG HTML, section 9.2 "Server-sent events", the EventSource
constructor's fetch steps). That is the case the web page's polling fallback must handle.
"""

from __future__ import annotations

from progress_sync._contract import STREAM_PATHS, STREAMS_REFUSED, path_pattern
from quart import Quart, Response, request

from .._config import ServerConfig
from .._errors import error_response

_STREAM_PATHS = [path_pattern(template) for template in STREAM_PATHS]


def install_stream_refusal(app: Quart, config: ServerConfig) -> None:
    """When ``config.refuse_streams`` is set, answer stream routes with 503 and a JSON error.

    The body is ``{"error": "streams refused", "code": "streams_refused", ...}``; every other route
    (polling ``GET /api/jobs/{jobId}`` included) works as usual. Does nothing otherwise.
    """
    if not config.refuse_streams:
        return

    @app.before_request
    async def refuse_streams() -> Response | None:
        if not any(pattern.fullmatch(request.path) for pattern in _STREAM_PATHS):
            return None
        return error_response(
            STREAMS_REFUSED,
            "this server refuses event streams (started with --refuse-streams, a testing "
            "option); poll GET /api/jobs/{jobId} instead",
        )
