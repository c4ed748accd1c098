"""The web page at ``/``: live progress bars in plain HTML, CSS and JavaScript, no build step.

The files live in ``server/static/`` (shipped as package data, see ``pyproject.toml``). Quart
serves an app's ``static`` folder at ``/static/<path>`` by itself (``Quart(static_folder=
"static")``, the default, relative to the app's root path, which is this package), with
``ETag`` and ``Last-Modified`` for conditional requests; this module adds the page itself at ``/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from progress_sync._contract import (
    WEB_PAGE_PATH,
    quart_rule,
)
from quart import Blueprint, Response, request
from quart_schema import hide

from ._config import ServerConfig
from ._services import current_services

STATIC_DIR = Path(__file__).parent / "static"
"""Where the page's files are: ``index.html``, ``app.css``, ``app.js``, ``progress-client.js``."""

MAX_STREAM_JOBS_MARKER = "{{maxStreamJobs}}"
"""Where ``index.html`` gets the server's ``max_stream_jobs`` (in a ``<meta>`` the page reads)."""


def render_page(config: ServerConfig) -> bytes:
    """``index.html`` with this server's settings in it: the most ``jobIds`` per stream."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return page.replace(MAX_STREAM_JOBS_MARKER, str(config.max_stream_jobs)).encode()


web = Blueprint("web", __name__)
"""``GET /``: the page that starts demo jobs and follows them live.

The page's own assets come from Quart's static route (``/static/...``); the page reads its
settings from its URL's query (``sseTimeoutMs``, ``pollIntervalMs``, ``sseRetryMs``,
``maxStreams``; see ``static/progress-client.js``) and the server's ``max_stream_jobs`` from a
``<meta name="progress-sync-max-stream-jobs">`` in the page.
"""


@web.get(quart_rule(WEB_PAGE_PATH))
@hide
async def web_page() -> Response:
    """The web page (``static/index.html``); revalidated on every load (ETag)."""
    body = render_page(current_services().config)
    response = Response(body, 200, {"Cache-Control": "no-cache"}, mimetype="text/html")
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    return await response.make_conditional(request)
