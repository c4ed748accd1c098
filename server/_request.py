"""Reading JSON request bodies: every malformed body is a 400 that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

from progress_sync import InvalidFieldError
from quart_trio.wrappers import TrioRequest


def decode_json(data: bytes | str, *, field: str = "body") -> Any:
    """Decode JSON text, turning every way it can be malformed into one clear error.

    Args:
        data: the JSON text, UTF-8 bytes or str.
        field: the field to name in the error.

    Raises:
        InvalidFieldError: the text is not UTF-8, not JSON, or nested too deeply; the reason
            says which (with ``json``'s line and column).
    """
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise InvalidFieldError(
            field, f"is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except RecursionError:
        raise InvalidFieldError(field, "is JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidFieldError(field, f"is not valid JSON: {exc}") from None


class ApiRequest(TrioRequest):
    """Quart-Trio's request, whose ``get_json`` raises ``InvalidFieldError`` (a 400 naming the
    body and the reason) for any malformed body, where Quart gives a bare 400, or a 500 for
    text that is not UTF-8 or nested too deeply."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            return None
        data = await self.get_data(cache=cache, as_text=False)
        try:
            result = decode_json(data)
        except InvalidFieldError:
            if not silent:
                raise
            result = None
        if cache:
            self._cached_json[silent] = result
        return result
