"""What the OpenAPI document says beyond the handlers' signatures: problems, security, bodies, SSE.

Every error is sent as ``application/problem+json`` with ``{status, detail}`` (api/errors.py); each
handler lists the codes it can answer with ``problems(...)``. The submit body is read by hand (to
authenticate first), so its multipart schema is written here, as are the two media types of the
log endpoint and the event stream's ``text/event-stream``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    Example,
    Link,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType

PROBLEM_MEDIA_TYPE = "application/problem+json"
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
BEARER_OR_ANONYMOUS: list[dict[str, list[str]]] = [{"bearer": []}, {}]

_WHY = {
    400: "A parameter, header or part of the body is missing or malformed; the detail names it",
    401: "No token, or a malformed, unknown, expired or revoked one",
    403: "Authenticated, but not allowed",
    404: "No such resource visible to this caller",
    408: "The request body did not arrive in time",
    409: "The request conflicts with the resource's state",
    413: "Code or config over its size limit, or too many multipart parts",
    429: "Over a per-address or per-user limit; Retry-After says when to try again",
}


class Problem(msgspec.Struct):
    """An error (RFC 9457 style): the HTTP status again and a sentence saying what was wrong."""

    status: int
    detail: str


def problems(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(
            data_container=Problem, description=_WHY[code], media_type=PROBLEM_MEDIA_TYPE, generate_examples=False
        )
        for code in codes
    }


EXAMPLE_CONFIG = "competition_id: demo\nproject_id: hello\nuser_id: alice\nexpected_time: 10\n"


def _binary(description: str) -> Schema:
    return Schema(type=OpenAPIType.STRING, format="binary", description=description)  # type: ignore[arg-type]


SUBMIT_BODY = RequestBody(
    required=True,
    description="The solution and its config as two multipart parts",
    content={
        "multipart/form-data": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["code", "config_file"],
                properties={
                    "code": _binary("The solution (UTF-8 Python source)"),
                    "project": _binary(
                        "Instead of code: a project directory as an uncompressed tar; the config names its entrypoint"
                    ),
                    "config_file": _binary(
                        "YAML or JSON mapping: competition_id, project_id, user_id, expected_time (seconds), "
                        "and for old clients a token"
                    ),
                },
            ),
            examples={
                "hello": Example(
                    summary="A one-line job for user alice",
                    value={"code": "print('hello')\n", "config_file": EXAMPLE_CONFIG},
                )
            },
        )
    },
)
# What a submitted job's id opens: the operations that take it (schema-driven clients follow these).
JOB_LINKS = {
    name: Link(operation_id=name, parameters={"job_id": "$response.body#/job_id"})
    for name in ("jobStatus", "jobResults", "jobLogs", "jobEvents", "cancelJob")
}

_TEXT = Schema(type=OpenAPIType.STRING)
_SSE = OpenAPIMediaType(
    schema=Schema(
        type=OpenAPIType.OBJECT,
        description="Each Server-Sent Event: its id is a resume point for Last-Event-ID, its data a JSON "
        "document; ': heartbeat' comments come while the stream is quiet",
        properties={"event": _TEXT, "id": _TEXT, "data": _TEXT, "retry": Schema(type=OpenAPIType.INTEGER)},
    )
)


def _not_null(schema: Schema) -> None:
    """An optional parameter is left out, never sent as null: drop the null branch Litestar adds."""
    branches = [b for b in schema.one_of or [] if not (isinstance(b, Schema) and b.type == OpenAPIType.NULL)]
    if schema.one_of is not None and len(branches) == 1 and isinstance(branches[0], Schema):
        schema.one_of = None
        for name, value in vars(branches[0]).items():
            if value is not None and getattr(schema, name) is None:
                setattr(schema, name, value)
    elif schema.one_of is not None:
        schema.one_of = branches
    if isinstance(schema.type, list):
        kept = [t for t in schema.type if t != OpenAPIType.NULL]
        schema.type = kept[0] if len(kept) == 1 else kept
    if schema.enum is not None:
        schema.enum = [value for value in schema.enum if value is not None]


@dataclass
class Documented(Operation):
    """An operation whose optional parameters are documented as absent-or-valued, not nullable."""

    def __post_init__(self) -> None:
        for parameter in self.parameters or []:
            schema = getattr(parameter, "schema", None)
            if isinstance(schema, Schema) and not getattr(parameter, "required", False):
                _not_null(schema)


@dataclass
class SubmitOperation(Documented):
    """The submit operation with its multipart body (read by the handler, after authentication)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.request_body = SUBMIT_BODY
        accepted = self.responses.get("200") if self.responses else None
        if isinstance(accepted, OpenAPIResponse):
            accepted.links = dict(JOB_LINKS)
            # The three answers share fields, so a body can match more than one: anyOf, not oneOf.
            media = (accepted.content or {}).get("application/json")
            if media is not None and isinstance(media.schema, Schema) and media.schema.one_of:
                media.schema = Schema(any_of=media.schema.one_of)


@dataclass
class LogsOperation(Documented):
    """Log bytes as they are, or (``follow=true``) Server-Sent Events."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.responses is not None:
            self.responses["200"] = OpenAPIResponse(
                description="The latest attempt's bytes from offset (X-Log-Offset: the next offset), or with "
                "follow=true an event stream of 'log' events ({offset, text}, and attempt after a retry: each "
                "attempt's output from its own byte 0) and a final 'end'",
                content={
                    "application/octet-stream": OpenAPIMediaType(schema=_binary("Console output bytes")),
                    "text/event-stream": _SSE,
                },
            )


@dataclass
class EventStreamOperation(Documented):
    """Ledger events as Server-Sent Events."""

    stream_description = "One event per ledger record the caller may see; it ends when the token stops being valid"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.responses is not None:
            self.responses["200"] = OpenAPIResponse(
                description=self.stream_description, content={"text/event-stream": _SSE}
            )


@dataclass
class HeadStreamOperation(EventStreamOperation):
    """The ledger's head position as Server-Sent Events (no event contents)."""

    stream_description = "One event each time the ledger's head moves; it never ends by itself"


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="gpuledger",
        version=version,
        path="/openapi",
        render_plugins=[JsonRenderPlugin()],
        components=Components(
            schemas={},
            security_schemes={
                "bearer": SecurityScheme(
                    type="http", scheme="bearer", description="A token from 'gpuledger token create'"
                )
            },
        ),
    )
