"""Authentication: the producer bearer token, and per-job subscribe tokens for readers.

- Producer endpoints (every ``POST`` under ``/api/``: create, ingest, finish, cancel) need
  ``Authorization: Bearer <producer token>`` when a producer token is configured. The token
  is compared in constant time (``hmac.compare_digest``). Bearer usage follows RFC 6750: a
  missing or wrong token gets 401 with ``WWW-Authenticate: Bearer``.
- When a subscribe secret is configured, reading a job (``GET /api/jobs/{jobId}`` and its
  stream) needs that job's subscribe token in ``?token=`` (``EventSource`` cannot set
  headers), or the producer token as a bearer. A subscribe token is returned when the job is
  created; it is the job id signed with the server secret and a timestamp by itsdangerous'
  ``URLSafeTimedSerializer`` (https://itsdangerous.palletsprojects.com/en/stable/timed/), and
  is refused after ``subscribe_token_ttl`` seconds. A token for one job never opens another.

No secret or token ever goes into a log line or an error message.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from progress_sync._contract import (
    API_PREFIX,
    FORBIDDEN,
    INVALID_TOKEN,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
)
from quart import Quart, request
from quart_schema import security_scheme

from ._config import ServerConfig
from ._errors import ApiError
from ._openapi import PRODUCER_TOKEN, SUBSCRIBE_TOKEN, error_responses

F = TypeVar("F", bound=Callable[..., Any])

SUBSCRIBE_TOKEN_SALT = "progress-sync.subscribe-token.v1"
"""itsdangerous salt: keeps subscribe tokens apart from anything else signed with the secret."""

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="progress-sync"'}
_READ_METHODS = frozenset({"GET", "HEAD"})
_OPEN_METHODS = frozenset({"OPTIONS"})  # CORS preflights carry no credentials


class SubscribeTokens:
    """Issues and checks per-job subscribe tokens (itsdangerous ``URLSafeTimedSerializer``).

    Args:
        secret: the server secret that signs the tokens.
        ttl: seconds a token stays valid after it was issued.
        clock: seconds since the Unix epoch (``time.time`` by default; tests pass a shifted
            clock to make tokens that are already expired).
    """

    def __init__(self, secret: str, *, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self._clock = clock

        class _Signer(TimestampSigner):
            # itsdangerous reads the time through this hook, in whole seconds.
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(secret, salt=SUBSCRIBE_TOKEN_SALT, signer=_Signer)

    def issue(self, job_id: str) -> str:
        """Return a subscribe token for ``job_id``, valid for ``ttl`` seconds from now."""
        token = self._serializer.dumps({"job": job_id})
        return token if isinstance(token, str) else token.decode()

    def check(self, token: str, job_id: str) -> None:
        """Check that ``token`` is a valid, unexpired subscribe token for ``job_id``.

        Raises:
            ApiError: 401 when the token is malformed, badly signed or expired; 403 when it
                is valid but for another job. The detail never holds the token.
        """
        try:
            payload: Any = self._serializer.loads(token, max_age=math.ceil(self.ttl))
        except SignatureExpired as exc:
            detail = "the subscribe token has expired"
            if exc.date_signed is not None:
                age = self._clock() - exc.date_signed.timestamp()
                detail = (
                    f"the subscribe token expired {max(0.0, age - self.ttl):.0f} s ago "
                    f"(tokens last {self.ttl:g} s)"
                    if age >= 0
                    else "the subscribe token was issued in the future (check the server clock)"
                )
            raise ApiError(
                TOKEN_EXPIRED,
                f"{detail}; ask the producer for a new one "
                "(POST /api/jobs/{jobId}/subscribe-token with the producer token)",
                "token",
            ) from None
        except BadSignature:
            raise ApiError(
                INVALID_TOKEN,
                "the subscribe token is not valid for this server (malformed or badly "
                "signed); use the subscribeToken returned when the job was created",
                "token",
            ) from None
        if not isinstance(payload, dict) or payload.get("job") != job_id:
            raise ApiError(
                FORBIDDEN,
                "this subscribe token is for another job; use the token returned when "
                "this job was created",
                "token",
            )


def bearer_matches(header: str | None, expected: str) -> bool:
    """True when ``header`` is ``Bearer <expected>``, compared in constant time."""
    if header is None:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), expected.encode())


def check_producer_token(header: str | None, expected: str) -> None:
    """Require ``Authorization: Bearer <expected>``.

    Raises:
        ApiError: 401 (with ``WWW-Authenticate: Bearer``) when the header is missing, not a
            bearer token, or the wrong token.
    """
    if header is None or not header.strip():
        raise ApiError(
            UNAUTHORIZED,
            "this endpoint needs the producer token: send 'Authorization: Bearer <token>'",
            "Authorization",
            headers=_BEARER_CHALLENGE,
        )
    if not bearer_matches(header, expected):
        raise ApiError(
            UNAUTHORIZED,
            "the Authorization header does not hold the producer token "
            "(expected 'Bearer <token>' with the server's --producer-token)",
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="progress-sync", error="invalid_token"'},
        )


class Auth:
    """The server's authentication settings and checks (see the module docstring).

    Attributes:
        producer_token: the producer bearer token, or None when producer endpoints are open.
        subscribe_tokens: the subscribe token issuer, or None when reading is open.
    """

    def __init__(self, config: ServerConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.producer_token = config.producer_token
        self.subscribe_tokens = (
            SubscribeTokens(config.subscribe_secret, ttl=config.subscribe_token_ttl, clock=clock)
            if config.subscribe_secret is not None
            else None
        )

    def credentials(self, job_id: str) -> dict[str, Any]:
        """What a created job's answer carries for readers: ``{"subscribeToken"}`` or ``{}``."""
        if self.subscribe_tokens is None:
            return {}
        return {
            "subscribeToken": self.subscribe_tokens.issue(job_id),
            "subscribeTokenExpiresIn": self.subscribe_tokens.ttl,
        }

    def authenticate(
        self, method: str, job_id: str | None, authorization: str | None, token: str | None
    ) -> None:
        """Check one ``/api/`` request.

        Args:
            method: the HTTP method.
            job_id: the route's ``jobId``, or None for a route without one.
            authorization: the ``Authorization`` header, or None.
            token: the ``token`` query parameter, or None.

        Raises:
            ApiError: 401 or 403 when the request may not proceed (see the module docstring).
        """
        if method not in _READ_METHODS:
            if self.producer_token is not None:
                check_producer_token(authorization, self.producer_token)
            return
        if self.subscribe_tokens is None:
            return
        if job_id is not None and token is not None:
            self.subscribe_tokens.check(token, job_id)
            return
        if self.producer_token is not None and authorization is not None:
            check_producer_token(authorization, self.producer_token)
            return
        if job_id is None:
            raise ApiError(
                UNAUTHORIZED if self.producer_token is not None else FORBIDDEN,
                "with subscribe tokens on, reading more than one job needs the producer token"
                + ("" if self.producer_token is not None else ", and none is configured"),
                "Authorization",
            )
        raise ApiError(
            UNAUTHORIZED,
            "reading this job needs its subscribe token: add ?token=<subscribeToken> "
            "(returned when the job was created)",
            "token",
        )


def install_auth(app: Quart, config: ServerConfig) -> Auth:
    """Check every ``/api/`` request before its route runs; returns the ``Auth`` in use."""
    auth = Auth(config)

    @app.before_request
    async def authenticate() -> None:
        # Unrouted requests (404, 405) pass, so they answer as they would without auth.
        if (
            request.url_rule is None
            or request.method in _OPEN_METHODS
            or not request.path.startswith(API_PREFIX)
        ):
            return
        auth.authenticate(
            request.method,
            (request.view_args or {}).get("job_id"),
            request.headers.get("Authorization"),
            request.args.get("token"),
        )

    return auth


def document_auth(
    config: ServerConfig, access: Literal["produce", "read-job", "read-jobs"]
) -> Callable[[F], F]:
    """Document what ``Auth.authenticate`` asks of a route under ``/api/`` with ``config``.

    The route gets quart-schema's ``security_scheme`` with the credentials that open it, and
    its 401 and 403 responses, only when the server has the setting that asks for them.

    Args:
        config: the server's settings (``producer_token``, ``subscribe_secret``).
        access: ``produce`` for a ``POST``; ``read-job`` for a ``GET`` of one job (its
            snapshot, its stream); ``read-jobs`` for a ``GET`` of several jobs.
    """
    producer = config.producer_token is not None
    producer_requirement: list[dict[str, list[str]]] = [{PRODUCER_TOKEN: []}] if producer else []
    requirements: list[dict[str, list[str]]] = []
    statuses: tuple[int, ...] = ()
    if access == "produce":
        if producer:
            requirements, statuses = [{PRODUCER_TOKEN: []}], (401,)
    elif config.subscribe_secret is not None:
        if access == "read-job":
            requirements = [{SUBSCRIBE_TOKEN: []}, *producer_requirement]
            statuses = (401, 403)
        elif producer:
            requirements, statuses = [{PRODUCER_TOKEN: []}], (401,)
        else:
            statuses = (403,)

    def decorator(func: F) -> F:
        if requirements:
            func = security_scheme(requirements)(func)
        return error_responses(*statuses)(func)

    return decorator
