"""HTTP errors of the API, and the one place domain errors become status codes.

    ApiError (status, detail, headers)
    ├── BadRequest          400  a field of the request is missing or malformed (names it)
    ├── NotAuthenticated    401  no token, or a malformed, unknown, expired or revoked one
    ├── PermissionDenied    403  authenticated, but not allowed
    ├── RequestTimeout      408  the body did not arrive in time (less than Content-Length, or too slow)
    ├── PayloadTooLarge     413  code or config over its size limit, or too many multipart parts
    ├── TooManyRequests     429  over an endpoint's per-minute limit (per user, or per address if
    │                            anonymous), or too many failed authentications from this address
    └── ServiceUnavailable  503  the server is still loading the ledger (or failed to start)

A ``LedgerUnavailable`` (the disk refused a write: full, an I/O error) is 503 with Retry-After too.

Anything else that escapes a handler is a bug: it is logged with its traceback and answered 500.
"""

from __future__ import annotations

from typing import Any, get_args

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from ledger.domain.errors import (
    ConcurrencyConflict,
    DomainError,
    InvalidTransition,
    LedgerError,
    LedgerUnavailable,
    LimitExceeded,
    NotAllowed,
    NotFound,
    QuotaExceeded,
)
from ledger.domain.jobs import Status

log = structlog.get_logger()
RETRY_UNWRITABLE_S = 10  # Retry-After while the ledger cannot write (the writer retries every few seconds)


class ApiError(Exception):
    status = 500

    def __init__(
        self, detail: str, headers: dict[str, str] | None = None, *, extra: dict[str, object] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra  # more problem-detail members (which limit, whose)


class BadRequest(ApiError):
    status = 400


class NotAuthenticated(ApiError):
    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class PermissionDenied(ApiError):
    status = 403


class RequestTimeout(ApiError):
    status = 408

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"Connection": "close"})


class PayloadTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    status = 429


class ServiceUnavailable(ApiError):
    status = 503


def _status_of(error: LedgerError) -> int:
    match error:
        case LedgerUnavailable():
            return 503
        case LimitExceeded():
            return 429
        case NotFound():
            return 404
        case NotAllowed():
            return 403
        case InvalidTransition() | ConcurrencyConflict():
            return 409
        case DomainError():
            return 400
    return 500


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, extra: dict[str, object] | None = None
) -> Response[dict[str, object]]:
    """RFC 9457-style body; ``detail`` is the field the original clients read; ``extra``: more members."""
    return Response(
        {"status": status, "detail": detail, **(extra or {})},
        status_code=status,
        headers=headers,
        media_type="application/problem+json",
    )


def handle_api_error(_: Request[Any, Any, Any], error: ApiError) -> Response[dict[str, object]]:
    return problem(error.status, error.detail, error.headers, error.extra)


def handle_ledger_error(_: Request[Any, Any, Any], error: LedgerError) -> Response[dict[str, object]]:
    status = _status_of(error)
    headers = {}
    if isinstance(error, LimitExceeded) and error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    extra = error.details if isinstance(error, QuotaExceeded) else None  # which quota, used, left, resets_at
    if isinstance(error, LedgerUnavailable):  # nothing was written: the same request may be sent again
        headers["Retry-After"] = str(RETRY_UNWRITABLE_S)
        return problem(status, f"The ledger cannot write now, nothing was recorded ({error})", headers)
    return problem(status, str(error) if status < 500 else "Internal error in the ledger", headers, extra)


# Header names as sent (Litestar reports the handler's argument name), and enum choices by parameter.
_HEADER_NAMES = {"last_event_id": "Last-Event-ID", "idempotency_key": "Idempotency-Key"}
_CHOICES = {"status": get_args(Status), "stream": ("stdout", "stderr")}
_TYPE_WORDS = {
    "`int`": "an integer",
    "`int | null`": "an integer",  # an optional parameter (``after`` of the event stream): null is never sent
    "`bool`": "true or false",
    "`str`": "text",
    "`float`": "a number",
}


def _plain(key: str, message: str) -> str:
    """msgspec's wording without code marks: "Expected `int` >= 0" -> "expected an integer >= 0"."""
    if message.startswith("Invalid enum value") and key in _CHOICES:
        return "must be one of " + ", ".join(_CHOICES[key])
    if message.startswith("Expected `str` matching regex '^[0-9]"):
        return "expected a non-negative integer"
    for code, words in _TYPE_WORDS.items():
        message = message.replace(code, words)
    message = message.replace("`", "")
    return message[:1].lower() + message[1:]


def _invalid_parameters(extra: list[Any]) -> str:
    """One plain sentence per bad parameter, naming it and where it was sent."""
    parts = []
    for item in extra:
        if not isinstance(item, dict):
            continue
        source = getattr(item.get("source"), "value", item.get("source")) or "request"
        key = str(item.get("key"))
        where = "header" if source == "header" else f"{source} parameter"
        name = _HEADER_NAMES.get(key, key) if source == "header" else key
        parts.append(f"Invalid {where} {name}: {_plain(key, str(item.get('message', '')))}")
    return "; ".join(parts) or "Invalid request"


def handle_http_exception(_: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, object]]:
    detail = str(error.detail)
    if error.status_code == 400 and isinstance(error.extra, list) and error.extra:
        detail = _invalid_parameters(error.extra)
    return problem(error.status_code, detail, dict(error.headers or {}))


def handle_unexpected(_: Request[Any, Any, Any], error: Exception) -> Response[dict[str, object]]:
    # The app runs without Litestar's logging config, so without this a 500 would leave no trace.
    log.error("http.unhandled_error", error_type=type(error).__name__, exc_info=error)
    return problem(500, "Internal server error")


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    LedgerError: handle_ledger_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
