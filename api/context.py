"""What handlers are given: guards (limit, authenticate, admin) and the dependencies they declare.

Guards run before Litestar parses any parameter or body, so the order is always: the per-address
limit, then authentication, then (in dependencies) the lookup. Handlers name what they need —
``runtime``, ``views``, ``identity``, ``caller``, ``job``, ``address`` — and Litestar provides it.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.auth import Identity, optional, require
from api.errors import PermissionDenied
from api.limits import EndpointLimiter, client_address
from api.runtime import Runtime
from ledger.errors import NotFound
from ledger.jobs import JobState
from projections.views import Views

Connection = ASGIConnection[Any, Any, Any, Any]
_IDENTITY = "identity"  # where the authentication guard leaves the caller, in the connection's state


def runtime_of(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def address_of(connection: Connection) -> str:
    peer = connection.client.host if connection.client else None
    settings = runtime_of(connection.app.state).settings
    return client_address(peer, connection.headers.get("x-forwarded-for"), settings.trusted_proxies)


def limited(endpoint: str) -> Guard:
    """A guard: the endpoint's per-address limit (429 beyond it); put it first."""

    def check_limit(connection: Connection, _: BaseRouteHandler) -> None:
        limiter: EndpointLimiter = connection.app.state.limiter
        limiter.check(endpoint, address_of(connection))

    return check_limit


def authenticate(connection: Connection) -> Identity:
    """The caller's identity (401 otherwise); notes the token's use for ``token list``."""
    known: Identity | None = connection.state.get(_IDENTITY)
    if known is not None:
        return known
    runtime = runtime_of(connection.app.state)
    identity = require(runtime.ledger.views, connection.headers.get("authorization"))
    runtime.token_usage.touch(identity.token_id)
    connection.state[_IDENTITY] = identity
    return identity


def authenticated(connection: Connection, _: BaseRouteHandler) -> None:
    """A guard: the request carries a valid token (401 otherwise)."""
    authenticate(connection)


def admin_only(connection: Connection, _: BaseRouteHandler) -> None:
    """A guard: the caller is an admin (401 without a valid token, 403 for a user's)."""
    if not authenticate(connection).is_admin:
        raise PermissionDenied("Admin privileges required")


def provide_identity(request: Connection) -> Identity:
    return authenticate(request)


def provide_caller(request: Connection) -> Identity | None:
    """The caller if a token is sent (a bad one is still a 401); ``None`` for anonymous callers."""
    runtime = runtime_of(request.app.state)
    identity = optional(runtime.ledger.views, request.headers.get("authorization"))
    if identity is not None:
        runtime.token_usage.touch(identity.token_id)
    return identity


def provide_views(runtime: Runtime) -> Views:
    return runtime.ledger.views


def provide_job(job_id: str, identity: Identity, views: Views) -> JobState:
    """The job, after authentication. Another user's job is "not found": nobody learns that an id exists."""
    job = views.jobs.get(job_id)
    if job is None or not (identity.is_admin or job.user_id == identity.user_id):
        raise NotFound(f"Job {job_id} not found")
    return job


def provide_address(request: Connection) -> str:
    return address_of(request)


DEPENDENCIES = {
    "runtime": Provide(runtime_of, sync_to_thread=False),
    "views": Provide(provide_views, sync_to_thread=False),
    "identity": Provide(provide_identity, sync_to_thread=False),
    "caller": Provide(provide_caller, sync_to_thread=False),
    "job": Provide(provide_job, sync_to_thread=False),
    "address": Provide(provide_address, sync_to_thread=False),
}
