"""Errors the SDK raises: one small tree, from the server's answer or the connection.

GpuledgerError
├── ConnectionFailed     the server could not be reached (or the connection dropped for good)
│   └── NotGpuledger     the URL answers, but it is not a gpuledger server
├── ApiError (status, detail)       the server answered with an error status
│   ├── BadRequest       400  a field of the request is missing or malformed
│   ├── AuthError        401  no token, or an unknown, expired or revoked one
│   ├── Forbidden        403  authenticated, but not allowed
│   ├── NotFound         404  no such job (also: another user's job)
│   ├── Conflict         409  e.g. cancelling a job that already ended
│   ├── PayloadTooLarge  413  code or config over its size limit
│   ├── RateLimited      429  a limit; ``retry_after`` seconds from the Retry-After header
│   └── ServerError      5xx
├── JobFailed (job)      ``wait(check=True)`` on a job that did not complete
├── ProjectTooLarge      a project directory packs past the size limit (names its largest files)
└── DigestMismatch       a downloaded artifact's bytes do not match the digest the server recorded
"""

from __future__ import annotations

from typing import Any


class GpuledgerError(Exception):
    """Anything the SDK raises on purpose."""


class ConnectionFailed(GpuledgerError):
    pass


class NotGpuledger(ConnectionFailed):
    pass


class ApiError(GpuledgerError):
    status = 0

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class AuthError(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class RateLimited(ApiError):
    status = 429

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServerError(ApiError):
    status = 500


class JobFailed(GpuledgerError):
    def __init__(self, job: Any) -> None:
        reason = f" ({job.finish_reason})" if getattr(job, "finish_reason", None) else ""
        super().__init__(f"Job {job.job_id} {job.status}{reason}, exit code {job.exit_code}")
        self.job = job


class ProjectTooLarge(GpuledgerError):
    """Raised before anything is sent: the packed project is bigger than the limit."""


class DigestMismatch(GpuledgerError):
    pass


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}
