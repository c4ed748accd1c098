"""The web page at ``/``: live progress bars in plain HTML, CSS and JavaScript, no build step.

The files live in ``server/static/`` (shipped as package data, see ``pyproject.toml``). Quart
serves an app's ``static`` folder at ``/static/<path>`` by itself (``Quart(static_folder=
"static")``, the default, relative to the app's root path, which is this package), with
``ETag`` and ``Last-Modified`` for conditional requests; this module adds the page itself at ``/``.
"""

from __future__ import annotations

from pathlib import Path

from quart import Quart, Response, send_from_directory
from quart_schema import hide

STATIC_DIR = Path(__file__).parent / "static"
"""Where the page's files are: ``index.html``, ``app.css``, ``app.js``, ``progress-client.js``."""


def install_web_routes(app: Quart) -> None:
    """Register ``GET /``: the page that starts demo jobs and follows them live.

    The page's own assets come from Quart's static route (``/static/...``); the page reads its
    settings from its URL's query (``sseTimeoutMs``, ``pollIntervalMs``, ``sseRetryMs``,
    ``maxStreams``; see ``static/app.js``).
    """

    @app.get("/")
    @hide
    async def web_page() -> Response:
        """The web page (``static/index.html``); revalidated on every load."""
        response = await send_from_directory(STATIC_DIR, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response
