"""What handlers take from the request: the runtime, the client address, the endpoint limit."""

from __future__ import annotations

from typing import Any

from litestar import Request

from api.auth import Identity, optional, require
from api.limits import EndpointLimiter, client_address
from api.runtime import Runtime
from ledger.errors import NotFound
from ledger.jobs import JobState


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def address_of(request: Request[Any, Any, Any]) -> str:
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), runtime_of(request).settings.trusted_proxies)


def check_limit(request: Request[Any, Any, Any], endpoint: str) -> None:
    limiter: EndpointLimiter = request.app.state.limiter
    limiter.check(endpoint, address_of(request))


def authenticate(request: Request[Any, Any, Any]) -> Identity:
    """The caller's identity (401 otherwise); notes the token's use for ``token list``."""
    runtime = runtime_of(request)
    identity = require(runtime.ledger.views, request.headers.get("authorization"))
    runtime.token_usage.touch(identity.token_id)
    return identity


def authorized_job(
    request: Request[Any, Any, Any], job_id: str, *, endpoint: str | None = None
) -> tuple[Identity, JobState]:
    """The caller and the job, in this order: address limit, authentication, then the lookup.

    Another user's job is "not found", so nobody learns that a job id exists.
    """
    if endpoint is not None:
        check_limit(request, endpoint)
    identity = authenticate(request)
    job = runtime_of(request).ledger.views.jobs.get(job_id)
    if job is None or not (identity.is_admin or job.user_id == identity.user_id):
        raise NotFound(f"Job {job_id} not found")
    return identity, job


def maybe_authenticate(request: Request[Any, Any, Any]) -> Identity | None:
    runtime = runtime_of(request)
    identity = optional(runtime.ledger.views, request.headers.get("authorization"))
    if identity is not None:
        runtime.token_usage.touch(identity.token_id)
    return identity
