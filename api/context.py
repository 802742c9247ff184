"""What handlers are given: guards (limit, authenticate, admin) and the dependencies they declare.

Guards run before Litestar parses any parameter or body, so the order is always: authentication of a
sent token, the endpoint's limit (per that token's user; per address for anonymous callers), the
rest of authentication, then (in dependencies) the lookup. Handlers name what they need —
``runtime``, ``views``, ``identity``, ``caller``, ``job``, ``address`` — and Litestar provides it.
Guards are ``async def`` though they never await: Litestar runs a plain-function guard in its thread
pool, one hop per guard per request (about a third of a status read's time, measured).
"""

from __future__ import annotations

import re
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath
from litestar.types import Guard

from api.auth import Identity, optional, require
from api.edge import IDENTITY_KEY
from api.errors import BadRequest, PermissionDenied
from api.limits import EndpointLimiter, client_address
from api.runtime import Runtime
from ledger.errors import NotFound
from ledger.jobs import JobState
from ledger.tokens import may_see
from projections.views import Views

Connection = ASGIConnection[Any, Any, Any, Any]
JOB_ID_PREFIX = re.compile(r"[0-9A-HJKMNP-TV-Z]{1,26}")  # ULIDs: Crockford base32, upper case
MAX_CANDIDATES = 100  # an ambiguous prefix's count stops here
MIN_PREFIX = 4  # as git: shorter is taken as a whole id, never a prefix (one character matched everything)


def runtime_of(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def address_of(connection: Connection) -> str:
    return provide_address(connection, runtime_of(connection.app.state))


def limited(endpoint: str, then: Guard | None = None) -> Guard:
    """A guard: the endpoint's limit (429 beyond it), then ``then``'s check. A sent token is checked
    first (401 if bad) so that the limit is its user's; without one, the client address's. One guard
    for both, put first: Litestar copies the route handler for every guard it runs, on every request."""

    async def check_limit(connection: Connection, handler: BaseRouteHandler) -> None:
        limiter: EndpointLimiter = connection.app.state.limiter
        user = authenticate(connection).user_id if connection.headers.get("authorization") is not None else None
        limiter.check(endpoint, address_of(connection), user=user)
        if then is not None:
            await then(connection, handler)  # type: ignore[misc]

    return check_limit


def authenticate(connection: Connection) -> Identity:
    """The caller's identity (401 otherwise); notes the token's use for ``token list``."""
    return provide_identity(connection, runtime_of(connection.app.state).ledger.views)


def _state(connection: Connection) -> dict[str, Any]:
    """The scope's own state dict (the edge puts one in every request), not a copy of it."""
    state: dict[str, Any] = connection.scope.setdefault("state", {})
    return state


async def authenticated(connection: Connection, _: BaseRouteHandler) -> None:
    """A guard: the request carries a valid token (401 otherwise)."""
    authenticate(connection)


async def token_if_sent(connection: Connection, _: BaseRouteHandler) -> None:
    """A guard for submit: a sent token is checked before the body is read (401 if bad). Without
    one the request goes on, for old clients that put their token in the config."""
    if connection.headers.get("authorization") is not None:
        authenticate(connection)


def sent_identity(connection: Connection) -> Identity | None:
    """The identity a guard established from the header, if any."""
    known: Identity | None = _state(connection).get(IDENTITY_KEY)
    return known


async def admin_only(connection: Connection, _: BaseRouteHandler) -> None:
    """A guard: the caller is an admin (401 without a valid token, 403 for a user's)."""
    if not authenticate(connection).is_admin:
        raise PermissionDenied("Admin privileges required")


# The providers form one chain, runtime -> views -> identity or caller -> job (address: runtime ->
# address), so that Litestar resolves a handler's dependencies one after the other: two on the same
# level are resolved concurrently, in an anyio task group of their own, on every request (about a
# sixth of a status read's time). ``tests/test_api_routes.py`` checks that no API route has such a level.


def provide_identity(request: Connection, views: NamedDependency[Views]) -> Identity:
    """The caller, authenticated against the views' tokens (401 otherwise)."""
    known = sent_identity(request)
    if known is not None:
        return known
    runtime = runtime_of(request.app.state)
    identity = require(views, request.headers.get("authorization"))
    runtime.token_usage.touch(identity.token_id)
    _state(request)[IDENTITY_KEY] = identity  # for the handler's dependencies and the access log
    return identity


def provide_caller(request: Connection, views: NamedDependency[Views]) -> Identity | None:
    """The caller if a token is sent (a bad one is still a 401); ``None`` for anonymous callers."""
    runtime = runtime_of(request.app.state)
    identity = optional(views, request.headers.get("authorization"))
    if identity is not None:
        runtime.token_usage.touch(identity.token_id)
        _state(request)[IDENTITY_KEY] = identity
    return identity


def provide_views(runtime: NamedDependency[Runtime]) -> Views:
    return runtime.ledger.views


def provide_job(job_id: FromPath[str], identity: NamedDependency[Identity], views: NamedDependency[Views]) -> JobState:
    """The job, after authentication. Another user's job is "not found": nobody learns that an id exists."""
    return resolve_job(views, identity, job_id)


def resolve_job(views: Views, identity: Identity, text: str) -> JobState:
    """The job ``text`` names: its id, or (any case) a prefix of at least ``MIN_PREFIX`` characters of
    exactly one of the jobs the caller may see. Only those are candidates, so a prefix never tells of
    another user's job."""
    job = views.jobs.get(text)
    if job is None and len(text) >= MIN_PREFIX and JOB_ID_PREFIX.fullmatch(text.upper()):
        job = views.jobs.get(text.upper())
        if job is None:
            mine = None if identity.is_admin else identity.user_id
            candidates = views.jobs.ids_with_prefix(text.upper(), mine, MAX_CANDIDATES)
            if len(candidates) > 1:
                many = f"{len(candidates)}" if len(candidates) < MAX_CANDIDATES else f"at least {MAX_CANDIDATES}"
                raise BadRequest(f"Job id prefix {text} is ambiguous: it matches {many} jobs (give more characters)")
            job = views.jobs.get(candidates[0]) if candidates else None
    if job is None or not may_see(identity, job.user_id):
        raise NotFound(f"Job {text} not found")
    return job


def provide_address(request: Connection, runtime: NamedDependency[Runtime]) -> str:
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), runtime.settings.trusted_proxies)


DEPENDENCIES = {
    "runtime": Provide(runtime_of, sync_to_thread=False),
    "views": Provide(provide_views, sync_to_thread=False),
    "identity": Provide(provide_identity, sync_to_thread=False),
    "caller": Provide(provide_caller, sync_to_thread=False),
    "job": Provide(provide_job, sync_to_thread=False),
    "address": Provide(provide_address, sync_to_thread=False),
}
