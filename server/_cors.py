"""Cross-origin access (quart-cors): which browser origins may use the API and the streams."""

from __future__ import annotations

from collections.abc import Sequence

from quart import Quart
from quart_cors import cors

ALLOW_HEADERS = ("Content-Type", "Authorization", "Last-Event-ID", "If-None-Match")
"""Request headers a cross-origin page may send (``Last-Event-ID`` for a manual reconnect)."""

EXPOSE_HEADERS = ("ETag", "Retry-After", "Location")
"""Response headers a cross-origin page may read."""


def install_cors(app: Quart, origins: Sequence[str]) -> None:
    """Allow ``origins`` (``"*"`` for any) to call the API from a browser; none by default.

    With no origins nothing is installed, so responses carry no ``Access-Control-*`` header
    and browsers keep other origins out. Credentials (cookies) are not allowed: the API uses
    bearer tokens and query tokens, which need none. quart-cors adds the headers in an
    ``after_request`` hook and answers preflight ``OPTIONS`` requests, which works the same
    under Quart-Trio since it only uses Quart's request cycle.
    """
    if not origins:
        return
    cors(
        app,
        allow_origin=list(origins),
        allow_headers=list(ALLOW_HEADERS),
        allow_methods=["GET", "POST", "OPTIONS"],
        expose_headers=list(EXPOSE_HEADERS),
        max_age=600,
    )
