"""What handlers are given, for ``/api`` and the web routes alike: guards (limit, authenticate, admin)
and the dependencies they declare.

Guards run before Litestar parses any parameter or body, so the order is always: authentication of a
sent token, the endpoint's limit (per that token's user; per address for anonymous callers), the
rest of authentication, then (in dependencies) the lookup. Handlers name what they need — a port of
``api.ports`` (``ledger``, ``events``, ``plans``, ``output``, ``cluster``, ``server``), ``intake``, ``settings``,
``views``, ``identity``, ``caller``, ``job``, ``address`` — and Litestar provides it; the composition
root they come from (``api.runtime``) is read only here. Guards are ``async def`` though they never
await: Litestar runs a plain-function guard in its thread pool, one hop per guard per request (about a
third of a status read's time, measured).
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
from api.ports import Cluster, EventLog, Intake, JobOutput, LedgerWriter, Plans, Port, ServerState, Wiring, read_views
from ledger.domain.errors import NotFound
from ledger.domain.jobs import JobState
from ledger.domain.tokens import may_see
from ledger.store.settings import Settings
from projections.views import Views

Connection = ASGIConnection[Any, Any, Any, Any]
JOB_ID_PREFIX = re.compile(r"[0-9A-HJKMNP-TV-Z]{1,26}")  # ULIDs: Crockford base32, upper case
MAX_CANDIDATES = 100  # an ambiguous prefix's count stops here
MIN_PREFIX = 4  # as git: shorter is taken as a whole id, never a prefix (one character matched everything)


def wiring_of(state: State) -> Wiring:
    """The composition root the app was built with (``api.app``): only the providers below read it."""
    wiring: Wiring = state.runtime
    return wiring


def address_of(connection: Connection, trusted_proxies: list[str]) -> str:
    """The client's address (``X-Forwarded-For`` believed from trusted proxies only)."""
    peer = connection.client.host if connection.client else None
    return client_address(peer, connection.headers.get("x-forwarded-for"), trusted_proxies)


def limited(endpoint: str, then: Guard | None = None) -> Guard:
    """A guard: the endpoint's limit (429 beyond it), then ``then``'s check. A sent token is checked
    first (401 if bad) so that the limit is its user's; without one, the client address's. One guard
    for both, put first: Litestar copies the route handler for every guard it runs, on every request."""

    async def check_limit(connection: Connection, handler: BaseRouteHandler) -> None:
        limiter: EndpointLimiter = connection.app.state.limiter
        user = authenticate(connection).user_id if connection.headers.get("authorization") is not None else None
        address = address_of(connection, wiring_of(connection.app.state).settings.http.trusted_proxies)
        limiter.check(endpoint, address, user=user)
        if then is not None:
            await then(connection, handler)  # type: ignore[misc]

    return check_limit


def authenticate(connection: Connection) -> Identity:
    """The caller's identity (401 otherwise); notes the token's use for ``token list``."""
    return provide_identity(connection, read_views(wiring_of(connection.app.state).writer))


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


# --- the providers --------------------------------------------------------------------------------
# They form one chain, server -> settings -> cluster -> output -> plans -> events -> ledger -> views, then
# identity -> job, or caller, or address -> intake (no handler takes two of these three branches), so
# that Litestar resolves a handler's dependencies one after the other: two on the same level are resolved
# concurrently, in an anyio task group of their own, on every request (about a sixth of a status read's
# time; a link of the chain costs about 3 us). ``tests/test_api_routes.py`` checks that no API route has
# such a level. A parameter a provider takes only from the link before it is that order, not a use.


def provide_server(request: Connection) -> ServerState:
    return wiring_of(request.app.state).server


def provide_settings(request: Connection, server: Port[ServerState]) -> Settings:
    return wiring_of(request.app.state).settings


def provide_cluster(request: Connection, settings: NamedDependency[Settings]) -> Cluster:
    return wiring_of(request.app.state).cluster


def provide_output(request: Connection, cluster: Port[Cluster]) -> JobOutput:
    return wiring_of(request.app.state).output


def provide_plans(request: Connection, output: Port[JobOutput]) -> Plans:
    return wiring_of(request.app.state).plans


def provide_events(request: Connection, plans: Port[Plans]) -> EventLog:
    return wiring_of(request.app.state).events


def provide_ledger(request: Connection, events: Port[EventLog]) -> LedgerWriter:
    return wiring_of(request.app.state).writer


def provide_views(ledger: Port[LedgerWriter]) -> Views:
    return read_views(ledger)


def provide_address(request: Connection, views: NamedDependency[Views]) -> str:
    return address_of(request, wiring_of(request.app.state).settings.http.trusted_proxies)


def provide_intake(request: Connection, address: NamedDependency[str]) -> Intake:
    return wiring_of(request.app.state).intake


def provide_identity(request: Connection, views: NamedDependency[Views]) -> Identity:
    """The caller, authenticated against the views' tokens (401 otherwise)."""
    known = sent_identity(request)
    if known is not None:
        return known
    identity = require(views, request.headers.get("authorization"))
    wiring_of(request.app.state).token_usage.touch(identity.token_id)
    _state(request)[IDENTITY_KEY] = identity  # for the handler's dependencies and the access log
    return identity


def provide_caller(request: Connection, views: NamedDependency[Views]) -> Identity | None:
    """The caller if a token is sent (a bad one is still a 401); ``None`` for anonymous callers."""
    known = sent_identity(request)
    if known is not None:
        return known
    identity = optional(views, request.headers.get("authorization"))
    if identity is not None:
        wiring_of(request.app.state).token_usage.touch(identity.token_id)
        _state(request)[IDENTITY_KEY] = identity
    return identity


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


DEPENDENCIES = {
    "server": Provide(provide_server, sync_to_thread=False),
    "settings": Provide(provide_settings, sync_to_thread=False),
    "address": Provide(provide_address, sync_to_thread=False),
    "intake": Provide(provide_intake, sync_to_thread=False),
    "cluster": Provide(provide_cluster, sync_to_thread=False),
    "output": Provide(provide_output, sync_to_thread=False),
    "plans": Provide(provide_plans, sync_to_thread=False),
    "events": Provide(provide_events, sync_to_thread=False),
    "ledger": Provide(provide_ledger, sync_to_thread=False),
    "views": Provide(provide_views, sync_to_thread=False),
    "identity": Provide(provide_identity, sync_to_thread=False),
    "caller": Provide(provide_caller, sync_to_thread=False),
    "job": Provide(provide_job, sync_to_thread=False),
}
