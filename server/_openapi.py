"""The OpenAPI document of the HTTP API: ``GET /openapi.json`` (quart-schema).

quart-schema builds the document from the routes and their decorators (``validate_request``,
``validate_querystring``, ``validate_response``, ``document_response``, ``document_headers``,
``tag``, ``security_scheme``); the request and response bodies are the pydantic models of
``_models``. What this module adds:

- ``ApiOpenAPIProvider``: quart-schema's ``OpenAPIProvider``, customised where its defaults
  do not fit this API, through the hooks quart-schema documents for that (its docs, "How to
  guides", "Customising the OpenAPI schema"): path parameters named as the API names them
  (``jobId``, with its pattern), bodies that are not JSON (``text/event-stream``, the
  Prometheus text format, no body at all), response headers, named components for the
  models, and one description per error status.
- The descriptions of those other bodies (``JobEventStream``, ``MultiJobEventStream``,
  ``StreamSeenEnd``, ``NotModified``, ``PrometheusText``) and of response headers.
- ``error_responses``: documents the ``ErrorResponse`` body for the given statuses.
- ``install_openapi``: quart-schema on the app, with the security schemes.

``/docs`` is quart-schema's Swagger UI page, which loads Swagger UI's script and stylesheet
from cdnjs.cloudflare.com: it needs a browser with internet access. ``/openapi.json`` is
served by the app itself and works offline. quart-schema's other UI pages (``/redocs``,
``/scalar``) also load from CDNs and are not served.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pydantic
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Quart
from quart_schema import (
    APIKeySecurityScheme,
    DataSource,
    HttpSecurityScheme,
    OpenAPIProvider,
    QuartSchema,
    Tag,
    document_response,
)
from quart_schema.casing import snake_to_camel
from quart_schema.conversion import model_schema
from werkzeug.routing import BaseConverter, Rule

from ._models import (
    JOB_ID_SCHEMA,
    BatchRequest,
    CancelJobRequest,
    CompleteJobRequest,
    ErrorResponse,
    JobErrorEvent,
    JobSnapshotBody,
    ReconnectEvent,
    _commonmark,
)
from .sse._framing import EVENT_FOR_STATUS, JOB_ERROR_EVENT, RECONNECT_EVENT

F = TypeVar("F", bound=Callable[..., Any])

PRODUCER_TOKEN = "producerToken"
"""The security scheme of the producer token (``Authorization: Bearer``)."""

SUBSCRIBE_TOKEN = "subscribeToken"
"""The security scheme of a job's subscribe token (``?token=``)."""

TAGS = [
    Tag(name="jobs", description="Start, list, read and cancel jobs."),
    Tag(
        name="streams",
        description="Server-sent events (WHATWG HTML, section 9.2): a job's progress as it "
        "happens.",
    ),
    Tag(
        name="ingest",
        description="Producers in other processes report the progress of external jobs.",
    ),
    Tag(name="operations", description="Health and Prometheus metrics."),
]
"""The tags that group the operations, in this order."""

ERROR_DESCRIPTIONS = {
    400: "Invalid request: a malformed `jobId`, body, query parameter or field; `field` names "
    "it and `detail` says why.",
    401: "Missing, malformed, wrong or expired credentials (`field`: `Authorization` or `token`).",
    403: "Forbidden: a subscribe token for another job, or a route that reads several jobs "
    "while subscribe tokens are on and there is no producer token.",
    404: "No job has this id.",
    409: "The job's state forbids it: the id is taken, the job has already ended, or the "
    "server runs it (such jobs take no progress, `complete` or `fail` over HTTP).",
    413: "The body is larger than `--max-body-bytes` (4 MiB by default), or a batch holds "
    "more than `--max-batch-updates` updates (10,000 by default).",
    503: "Try again later (after `Retry-After` seconds, when sent): the store cannot be "
    "reached, the job queue or the server's streams are full, or the server is shutting "
    "down.",
}
"""The description of an ``ErrorResponse`` at each status (``detail`` gives the case)."""

_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


class _Headers(pydantic.BaseModel):
    # Response or request headers, documented only: the names are the aliases.
    model_config = pydantic.ConfigDict(use_attribute_docstrings=True, json_schema_extra=_commonmark)


class RetryAfterHeader(_Headers):
    """Headers of a 503."""

    retry_after: int | None = pydantic.Field(default=None, alias="Retry-After")
    """Seconds to wait before trying again (RFC 9110, section 10.2.3)."""


class WwwAuthenticateHeader(_Headers):
    """Headers of a 401 to a producer request."""

    www_authenticate: str | None = pydantic.Field(default=None, alias="WWW-Authenticate")
    """``Bearer realm="progress-sync"`` (RFC 6750, section 3); with ``error="invalid_token"``
    when a wrong token was sent."""


class LocationHeader(_Headers):
    """Headers of a created job."""

    location: str = pydantic.Field(alias="Location")
    """The job's ``statusUrl``."""


class SnapshotHeaders(_Headers):
    """Headers of a job's snapshot."""

    etag: str = pydantic.Field(alias="ETag")
    """The snapshot's entity tag, made from its ``seq``; send it back in ``If-None-Match``."""
    cache_control: str = pydantic.Field(alias="Cache-Control")
    """``no-cache``: caches revalidate every time."""


class StreamHeaders(_Headers):
    """Headers of an event stream, sent at once whether or not the job exists yet."""

    cache_control: str = pydantic.Field(alias="Cache-Control")
    """``no-cache, no-transform``: no cache replays the stream and no proxy compresses or
    rewrites it (RFC 9111, section 5.2.2.6)."""
    x_accel_buffering: str = pydantic.Field(alias="X-Accel-Buffering")
    """``no``: nginx does not buffer the stream."""


class IfNoneMatchHeader(_Headers):
    """Request headers of a conditional poll."""

    if_none_match: str | None = pydantic.Field(default=None, alias="If-None-Match")
    """The ``ETag`` of the snapshot the client has: 304 while it is still the current one
    (RFC 9110, section 13.1.2)."""


class LastEventIdHeader(_Headers):
    """Request headers of a reconnecting event stream."""

    last_event_id: str | None = pydantic.Field(default=None, alias="Last-Event-ID")
    """The ``id`` of the last event the client received; EventSource sends it when it
    reconnects (WHATWG HTML, section 9.2.4). Wins over ``?lastEventId=``. A malformed,
    unknown or stale id gets the current snapshot."""


class Body:
    """A response body that is not JSON; the class docstring is the response's description.

    Attributes:
        media_type: the body's media type, or None for a response without a body.
        schema: the JSON Schema of the body.
        example: an example body, or None.
    """

    media_type: ClassVar[str | None] = None
    schema: ClassVar[dict[str, Any]] = {"type": "string"}
    example: ClassVar[str | None] = None


def _event_schema(id_pattern: str, id_description: str) -> dict[str, Any]:
    """The schema of one event of a stream, as an SSE client hands it over.

    OpenAPI 3.1 has no way to describe the items of a stream; tools such as schemathesis read
    the ``schema`` of ``text/event-stream`` as that of one event, as OpenAPI 3.2's
    ``itemSchema`` is: an object with ``event``, ``id``, ``retry`` and ``data``, the data's
    JSON described by ``contentMediaType`` and ``contentSchema`` (JSON Schema 2020-12,
    section 8.4).
    """

    def data(component: str) -> dict[str, Any]:
        return {
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": f"#/components/schemas/{component}"},
        }

    return {
        "type": "object",
        "description": "One event (WHATWG HTML, section 9.2.6).",
        "properties": {
            "event": {"type": "string", "description": "The event type."},
            "id": {"type": "string", "pattern": id_pattern, "description": id_description},
            "retry": {
                "type": "integer",
                "minimum": 0,
                "description": "The reconnection time, milliseconds (on `reconnect`).",
            },
            "data": {"type": "string", "description": "The event's data: one line of JSON."},
        },
        "required": ["event", "data"],
        "oneOf": [
            {
                "properties": {
                    "event": {"enum": list(dict.fromkeys(EVENT_FOR_STATUS.values()))},
                    "data": data("JobSnapshot"),
                }
            },
            {"properties": {"event": {"const": JOB_ERROR_EVENT}, "data": data("JobErrorEvent")}},
            {"properties": {"event": {"const": RECONNECT_EVENT}, "data": data("ReconnectEvent")}},
        ],
    }


_SNAPSHOT_EXAMPLE = (
    '{"jobId":"job-1","status":"running","percent":41.5,"stage":"visuals","message":null,'
    '"seq":9,"createdAt":"2026-11-29T11:00:00.000Z","updatedAt":"2026-11-29T11:00:04.120Z",'
    '"reportedAt":1795950004.1,"kind":"demo","error":null,"result":null}'
)


class JobEventStream(Body):
    """The job's progress as server-sent events (``text/event-stream``, WHATWG HTML, section
    9.2): first a ``retry:`` field (``--retry-ms``, 2000 by default), then

    - ``job-progress``, data ``JobSnapshot``: the current snapshot at once, then each change;
    - ``job-completed``, ``job-failed`` or ``job-cancelled``, data ``JobSnapshot``: the
      terminal state, once; the stream ends after it;
    - ``job-error``, data ``JobErrorEvent``: the job was not registered within
      ``--registration-timeout``; the stream ends;
    - ``reconnect``, data ``ReconnectEvent``: the server is shutting down first; it comes
      with a spread ``retry:``.

    Each event's ``id`` is the snapshot's ``seq`` (``0`` for ``job-error``): reconnect with it
    in ``Last-Event-ID`` to skip what you have. Snapshots are conflated: a slow client gets
    the latest state, never a backlog. A ``: heartbeat`` comment goes out after
    ``--heartbeat-interval`` seconds (15) of silence. The schema is that of one event."""

    media_type = "text/event-stream"
    schema = _event_schema("^[0-9]+$", "The snapshot's `seq`; `0` on `job-error`.")
    example = (
        f"retry: 2000\n\nid: 9\nevent: job-progress\ndata: {_SNAPSHOT_EXAMPLE}\n\n"
        ": heartbeat\n\n"
        'id: 22\nevent: job-completed\ndata: {"jobId":"job-1","status":"completed",...}\n\n'
    )


class MultiJobEventStream(Body):
    """The events of every job of ``jobIds`` on one stream (``text/event-stream``), as on each
    job's own stream: every event's data carries ``jobId``. A job not registered when the
    stream opens gets one ``job-error`` at once. Each ``id`` lists, for each job of ``jobIds``
    in order, the ``seq`` the client has of it (``5,0,12``), so one ``Last-Event-ID`` resumes
    them all. The stream ends when every job has ended. The schema is that of one event."""

    media_type = "text/event-stream"
    schema = _event_schema(
        "^[0-9]+(,[0-9]+)*$", "The `seq` the client has of each job of `jobIds`, in order."
    )
    example = (
        f"retry: 2000\n\nid: 9,0\nevent: job-progress\ndata: {_SNAPSHOT_EXAMPLE}\n\n"
        'id: 9,0\nevent: job-error\ndata: {"jobId": "job-2", "error": "job not registered", '
        '"detail": "..."}\n\n'
    )


class StreamSeenEnd(Body):
    """No Content: the ``Last-Event-ID`` (or ``lastEventId``) is the id of the terminal event
    of the job (of every job, on the multi-job stream), so nothing more will come; this
    status tells EventSource to stop reconnecting (WHATWG HTML, section 9.2.1)."""


class NotModified(Body):
    """Not Modified: ``If-None-Match`` holds the current snapshot's ``ETag``; no body."""


class PrometheusText(Body):
    """The server's metrics in the Prometheus text format (prometheus-client); every name
    starts with ``progress_sync_``."""

    media_type = CONTENT_TYPE_LATEST
    example = "# TYPE progress_sync_reports_received_total counter\n"


def error_responses(*statuses: int) -> Callable[[F], F]:
    """Document the ``ErrorResponse`` body at each of ``statuses`` (quart-schema's
    ``document_response``); 503 with ``Retry-After``, 401 with ``WWW-Authenticate``."""
    headers: dict[int, type[_Headers]] = {401: WwwAuthenticateHeader, 503: RetryAfterHeader}

    def decorator(func: F) -> F:
        for status in statuses:
            func = document_response(ErrorResponse, status, headers.get(status))(func)
        return func

    return decorator


@dataclass
class _DescribedHttpScheme(HttpSecurityScheme):
    # quart-schema's security scheme classes have no description field (0.25), though OpenAPI
    # allows one (Security Scheme Object).
    description: str | None = None


@dataclass
class _DescribedApiKeyScheme(APIKeySecurityScheme):
    description: str | None = None


def security_schemes() -> dict[str, Any]:
    """The API's security schemes: the producer token and a job's subscribe token."""
    return {
        PRODUCER_TOKEN: _DescribedHttpScheme(
            scheme="bearer",
            description="The producer token (`--producer-token`): every `POST` under `/api/` "
            "needs it when the server has one (RFC 6750); reading a job accepts it too when "
            "subscribe tokens are on.",
        ),
        SUBSCRIBE_TOKEN: _DescribedApiKeyScheme(
            name="token",
            in_="query",
            description="A job's subscribe token, from `subscribeToken` when the job was "
            "created (or `POST /api/jobs/{jobId}/subscribe-token`): reading the job and its "
            "stream needs it when the server has a subscribe secret (`--subscribe-secret`). "
            "A query parameter, since EventSource cannot send headers.",
        ),
    }


def _description(cls: type) -> str:
    return (inspect.getdoc(cls) or "").replace("``", "`")


def _is_error_response(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == "#/components/schemas/ErrorResponse")


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a parameter or header: a text value is never null, has no title."""
    variants = schema.get("anyOf", ())
    if len(variants) == 2 and {"type": "null"} in variants:
        schema = {**schema, **next(v for v in variants if v != {"type": "null"})}
        del schema["anyOf"]
    return {k: v for k, v in schema.items() if k not in ("title", "default") or v is not None}


def _component(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move a model's schema into ``components`` under its title; return a reference to it."""
    title = schema.get("title")
    if title is None:
        return schema
    components[title] = schema
    return {"$ref": f"#/components/schemas/{title}"}


class ApiOpenAPIProvider(OpenAPIProvider):
    """quart-schema's OpenAPI provider, fitted to this API (see the module docstring).

    Args:
        app: the app (quart-schema passes it).
        extension: the ``QuartSchema`` (quart-schema passes it).
        job_kinds: the kinds of job the server's runner knows (``kind`` of ``POST /api/jobs``).
    """

    def __init__(
        self, app: Quart, extension: QuartSchema, *, job_kinds: Sequence[str] = ()
    ) -> None:
        super().__init__(app, extension)
        self._job_kinds = list(job_kinds)

    def schema(self) -> dict[str, Any]:
        """The whole document; the event data models are added to its components."""
        document = super().schema()
        schemas = document["components"]["schemas"]
        for model in (JobSnapshotBody, JobErrorEvent, ReconnectEvent):
            schema = self._schema(model, "serialization")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        if "CreateJobRequest" in schemas:
            schemas["CreateJobRequest"]["properties"]["kind"]["enum"] = [*self._job_kinds, None]
        # Components are named by their title where the class is named apart from what it
        # documents (JobSnapshotBody documents the JobSnapshot clients know).
        for model in (JobSnapshotBody,):
            title = model.model_config.get("title") or model.__name__
            if model.__name__ != title and model.__name__ in schemas:
                schemas[title] = schemas.pop(model.__name__)
                text = json.dumps(document).replace(
                    f'"#/components/schemas/{model.__name__}"', f'"#/components/schemas/{title}"'
                )
                document = json.loads(text)
        return document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        """The rule's path items, with ``{jobId}`` for ``<job_id>`` and CommonMark text."""
        paths, components = super().build_paths(rule)
        renamed = {}
        for path, item in paths.items():
            for operation in item.values():
                for key in ("summary", "description"):
                    if key in operation:
                        operation[key] = operation[key].replace("``", "`").strip()
                responses = operation["responses"]
                operation["responses"] = {
                    status: responses[status] for status in sorted(responses, key=int)
                }
                for status, response in operation["responses"].items():
                    if _is_error_response(response):
                        response["description"] = ERROR_DESCRIPTIONS[int(status)]
            renamed[_PATH_PARAMETER.sub(lambda m: "{" + snake_to_camel(m[1]) + "}", path)] = item
        return renamed, components

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        """A path parameter, named in camelCase as in the JSON bodies (``jobId``)."""
        parameter = super().build_path_parameter(name, converter)
        parameter["name"] = snake_to_camel(name)
        if name == "job_id":
            parameter["schema"] = {"type": "string", **JOB_ID_SCHEMA}
            parameter["description"] = (
                "The job's id: 1-128 letters, digits, `.`, `_`, `:` or `-`, starting with a "
                "letter or digit (400 otherwise)."
            )
        return parameter

    def build_querystring_parameters(
        self, model: type
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Query parameters; the model's required fields are required parameters."""
        parameters, components = super().build_querystring_parameters(model)
        return self._mark_required(model, parameters), components

    def build_headers_parameters(self, model: type) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Request header parameters, named by the model's aliases (``Last-Event-ID``)."""
        parameters, components = super().build_headers_parameters(model)
        return self._mark_required(model, parameters), components

    def build_request_body(
        self, model: type, source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A JSON request body, its model a named component; NDJSON too for a batch."""
        schema = self._schema(model, "validation")
        components = schema.pop("$defs", {})
        content: dict[str, Any] = {"application/json": {"schema": _component(schema, components)}}
        if model is BatchRequest:
            content["application/x-ndjson"] = {
                "schema": {
                    "type": "string",
                    "description": "One `BatchUpdate` JSON object per line (NDJSON, "
                    "https://github.com/ndjson/ndjson-spec); blank lines are skipped. "
                    "`application/jsonl` and `application/x-jsonlines` are read the same.",
                },
                "example": '{"jobId": "a", "percent": 10}\n{"jobId": "b", "percent": 55.5}\n',
            }
        # Every body is required but those of complete and cancel, which may be empty.
        required = model not in (CompleteJobRequest, CancelJobRequest)
        return {"content": content, "required": required}, components

    def build_response_object(
        self, model: type, headers_model: type | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A response: a JSON model as a named component, or a ``Body``; its headers."""
        components: dict[str, Any] = {}
        response: dict[str, Any] = {"description": _description(model).split("\n\n")[0]}
        if isinstance(model, type) and issubclass(model, Body):
            response["description"] = _description(model)
            if model.media_type is not None:
                media: dict[str, Any] = {"schema": model.schema}
                if model.example is not None:
                    media["example"] = model.example
                response["content"] = {model.media_type: media}
        else:
            schema = self._schema(model, "serialization")
            components.update(schema.pop("$defs", {}))
            response["content"] = {"application/json": {"schema": _component(schema, components)}}
        if headers_model is not None:
            schema = self._schema(headers_model, "validation")
            required = set(schema.get("required", ()))
            response["headers"] = {
                name: {
                    "description": field.pop("description", ""),
                    "required": name in required,
                    "schema": _plain({k: v for k, v in field.items() if k != "title"}),
                }
                for name, field in schema["properties"].items()
            }
        return response, components

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str | None:
        """The route function's name in camelCase (``createJob``, ``streamJob``)."""
        return str(snake_to_camel(func.__name__))

    def _schema(self, model: type, mode: Any) -> dict[str, Any]:
        return model_schema(
            model,
            preference=self._app.config["QUART_SCHEMA_CONVERSION_PREFERENCE"],
            schema_mode=mode,
        )

    def _mark_required(self, model: type, parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        required = set(self._schema(model, "validation").get("required", ()))
        for parameter in parameters:
            parameter["schema"] = _plain(parameter["schema"])
            parameter["schema"].pop("title", None)
            if parameter["name"] in required:
                parameter["required"] = True
        return parameters


def install_openapi(app: Quart, *, job_kinds: Sequence[str]) -> QuartSchema:
    """Serve the OpenAPI document at ``/openapi.json`` and Swagger UI at ``/docs``.

    ``job_kinds`` are the kinds of job the server runs: the values of ``kind``.

    Route responses that are pydantic models, or dicts checked by ``validate_response``,
    are dumped with ``exclude_unset``: a key the route left out stays out of the body.
    """
    return QuartSchema(
        app,
        info={
            "title": "progress-sync",
            "version": "0.1.0",
            "description": "Job progress from the code doing the work to the people "
            "watching it, over server-sent events. Every 4xx and 5xx body is an "
            "`ErrorResponse`. The security requirements reflect this server's settings: "
            "with neither `--producer-token` nor `--subscribe-secret` every route is open.",
        },
        tags=[*TAGS],
        security_schemes=security_schemes(),
        # quart-schema makes the provider with (app, extension): the kinds are bound first.
        # a partial, not a class: quart-schema only calls it with (app, extension)
        openapi_provider_class=functools.partial(  # type: ignore[arg-type]
            ApiOpenAPIProvider, job_kinds=sorted(job_kinds)
        ),
        redoc_ui_path=None,
        scalar_ui_path=None,
        pydantic_dump_options={"exclude_unset": True},
    )
