"""The API's routes as Litestar builds them: what each request pays for before its handler runs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.exceptions import LitestarDeprecationWarning
from litestar.routes import HTTPRoute

from api.app import create_app
from api.runtime import Runtime
from ledger.store.settings import Settings, StorageSettings

# The providers' one chain (``api.context``): a status read resolves every link, one after another.
CHAIN = ["server", "settings", "cluster", "output", "plans", "events", "ledger", "views", "identity", "job"]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Litestar:
    """The app as ``serve`` builds it (its runtime not started)."""
    monkeypatch.chdir(tmp_path)
    return create_app(
        Settings(storage=StorageSettings(database_path=str(tmp_path / "l.db"), jobs_dir=str(tmp_path / "jobs")))
    )


def test_api_dependencies_resolve_one_after_another(app: Litestar) -> None:
    """No /api route has two dependencies on one level: Litestar would resolve them concurrently in an
    anyio task group of their own, on every request (about a sixth of a status read)."""
    levels: dict[str, list[list[str]]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/api/"):
            continue
        for handler in route.route_handlers:
            batches = handler.create_kwargs_model(route.path_parameters).dependency_batches
            levels[f"{sorted(handler.http_methods)} {route.path}"] = [sorted(d.key for d in b) for b in batches]
    assert len(levels) > 20  # every API route was looked at
    assert "['GET'] /api/status/{job_id:str}" in levels
    assert levels["['GET'] /api/status/{job_id:str}"] == [[key] for key in CHAIN]
    concurrent = {route: batches for route, batches in levels.items() if any(len(b) > 1 for b in batches)}
    assert concurrent == {}


def test_read_routes_run_two_guards(app: Litestar) -> None:
    """A status or results read runs the start-up guard and one more (limit, then token): Litestar
    copies the route handler for each guard, on every request."""
    counted = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path in ("/api/status/{job_id:str}", "/api/results/{job_id:str}"):
            counted[route.path] = [len(h.resolve_guards()) for h in route.route_handlers if "GET" in h.http_methods]
    assert counted == {"/api/status/{job_id:str}": [2], "/api/results/{job_id:str}": [2]}


def test_every_parameter_and_dependency_is_declared_explicitly(app: Litestar) -> None:
    """No handler leans on the inferred styles Litestar 3 drops (a dependency by its name alone, a
    path or query parameter by its annotation alone, a header through ``Parameter(header=...)``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handlers = 0
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                for handler in route.route_handlers:
                    handler.create_kwargs_model(route.path_parameters)
                    handlers += 1
    assert handlers > 40  # the API's and the web dashboard's
    assert [str(w.message) for w in caught if issubclass(w.category, LitestarDeprecationWarning)] == []


def test_no_handler_is_given_the_composition_root(app: Litestar) -> None:
    """Handlers take narrow ports (``api.ports``), never the whole runtime: no handler parameter is
    typed ``Runtime``, and no API module but the app imports it."""
    wide = []
    handlers = 0
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            handlers += 1
            for name, parameter in handler.parsed_fn_signature.parameters.items():
                if Runtime in (parameter.annotation, *getattr(parameter.annotation, "__args__", ())):
                    wide.append(f"{route.path} {name}")
    assert handlers > 40
    assert wide == []
    api = Path(__file__).resolve().parent.parent / "api"
    importers = sorted(
        str(path.relative_to(api))
        for path in api.rglob("*.py")
        if "from api.runtime import" in path.read_text() or "import api.runtime" in path.read_text()
    )
    assert importers == ["app.py"]


def test_api_and_web_routes_share_one_set_of_guards_and_providers(app: Litestar) -> None:
    """Every guard and every dependency provider of every route is ``api.context``'s (the start-up
    guard is the app's), but for the web's own instant to show (``moment``)."""
    guards: set[str] = set()
    providers: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for layer in handler.ownership_layers:
                guards.update(f"{g.__module__}.{g.__qualname__}" for g in layer.guards or [])
            for key, provide in handler.resolve_dependencies().items():
                providers.add(f"{key}: {provide.dependency.__module__}.{provide.dependency.__qualname__}")
    assert "api.context.token_if_sent" in guards
    assert "api.context.admin_only" in guards
    assert {g for g in guards if not g.startswith(("api.context.", "api.app.until_ready"))} == set()
    assert any(p.startswith("identity: api.context.") for p in providers)
    assert {p for p in providers if ": api.context." not in p} == {"moment: api.web.deps.provide_moment"}
