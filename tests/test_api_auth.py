"""Who may touch a job: every job endpoint against every kind of caller, on the app in-process (tests/inprocess.py).

Owner and admin succeed; no token, a malformed header, an unknown, expired or revoked token get 401;
another user gets 404, so that nobody learns whether someone else's job exists.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from inprocess import InProcess
from server import config_yaml, run_cli, submit, wait_status

from api.app import create_app
from ledger.domain.tokens import mint
from ledger.store import commands
from ledger.store.settings import Settings, StorageSettings

ENDPOINTS = {
    "status": ("GET", "/api/status/{}"),
    "results": ("GET", "/api/results/{}"),
    "events": ("GET", "/api/jobs/{}/events"),
    "cancel": ("POST", "/api/cancel/{}"),
}


@dataclass
class World:
    server: InProcess
    headers: dict[str, dict[str, str]]
    finished_job: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired_token(server: InProcess, user: str) -> str:
    """A token whose expiry is in the past, written straight to the ledger (the CLI refuses --days 0)."""
    secret, issued = mint(user, secret=None, days=1, is_admin=False, by="test")
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    server.write(commands.issue_token(msgspec.structs.replace(issued, expires_at=past)))
    return secret


def revoked_token(server: InProcess, user: str) -> str:
    """A token issued, then revoked, as ``gpuledger token revoke`` does it."""
    secret, issued = mint(user, secret=None, days=30, is_admin=False, by="test")
    server.write(commands.issue_token(issued))
    server.write(commands.revoke_token(issued.token_id, by="admin"))
    return secret


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = InProcess(tmp_path_factory.mktemp("auth"), rate_limit_per_minute=100, max_active_jobs_per_user=100)
    server.start()
    assert server.admin_token is not None
    owner, other, revoked = server.token("owner"), server.token("other"), revoked_token(server, "revoked")
    headers = {
        "none": {},
        "malformed": {"Authorization": f"Token {owner}"},
        "unknown": bearer("x" * 43),
        "expired": bearer(expired_token(server, "expired")),
        "revoked": bearer(revoked),
        "owner": bearer(owner),
        "other": bearer(other),
        "admin": bearer(server.admin_token),
    }
    with server.client(owner) as client:
        finished = submit(client, "print('mine')", config_yaml("owner"), wait=True).json()["job_id"]
    yield World(server, headers, finished)
    server.stop()


def pending_job(world: World) -> str:
    """A job of the owner that is still cancellable (queued behind nothing: it may already be running)."""
    with world.server.client(headers=world.headers["owner"]) as client:
        answer = submit(client, "import time\ntime.sleep(30)\n", config_yaml("owner", expected=60))
        assert answer.status_code == 200, answer.text
        job_id: str = answer.json()["job_id"]
        return job_id


def call(world: World, who: str, endpoint: str, job_id: str) -> httpx.Response:
    method, path = ENDPOINTS[endpoint]
    with world.server.client() as client:
        return client.request(method, path.format(job_id), headers=world.headers[who], timeout=30)


DENIED = [("none", 401), ("malformed", 401), ("unknown", 401), ("expired", 401), ("revoked", 401), ("other", 404)]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(("who", "status"), DENIED)
def test_job_endpoint_refuses_callers_without_rights(world: World, endpoint: str, who: str, status: int) -> None:
    """No, malformed, unknown, expired or revoked tokens get 401; another user's token 404 (no leak)."""
    job_id = world.finished_job if endpoint != "cancel" else pending_job(world)
    answer = call(world, who, endpoint, job_id)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    if endpoint == "cancel":
        with world.server.client(world.server.admin_token, timeout=30) as admin:
            assert admin.get(f"/api/status/{job_id}").json()["status"] in ("pending", "running")
            admin.post(f"/api/cancel/{job_id}")
            wait_status(admin, job_id, {"cancelled"}, timeout=20)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("who", ["owner", "admin"])
def test_job_endpoint_serves_owner_and_admin(world: World, endpoint: str, who: str) -> None:
    """The job's owner and an admin get a 200 from every job endpoint."""
    job_id = world.finished_job if endpoint != "cancel" else pending_job(world)
    answer = call(world, who, endpoint, job_id)
    assert answer.status_code == 200, answer.text
    assert answer.json().get("job_id") == job_id
    if endpoint == "cancel":
        with world.server.client(world.server.admin_token, timeout=30) as admin:
            assert wait_status(admin, job_id, {"cancelled", "completed", "failed"}, timeout=20)["status"] == "cancelled"
    if endpoint == "results":
        assert answer.json()["stdout"] == "mine\n"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("who", ["none", "malformed", "unknown", "expired", "revoked"])
def test_unauthenticated_answer_is_the_same_for_a_missing_job(world: World, endpoint: str, who: str) -> None:
    """Without valid credentials, a job that does not exist gets exactly the answer an existing one gets."""
    existing = call(world, who, endpoint, world.finished_job)
    missing = call(world, who, endpoint, "01JOBTHATDOESNOTEXIST0000")
    assert (existing.status_code, existing.json()) == (missing.status_code, missing.json())
    assert existing.status_code == 401


def test_other_users_job_looks_exactly_like_a_missing_one(world: World) -> None:
    """Another user's job and a non-existent job get the same 404 status (and the id is not confirmed)."""
    mine = call(world, "other", "status", world.finished_job)
    missing = call(world, "other", "status", "01JOBTHATDOESNOTEXIST0000")
    assert mine.status_code == missing.status_code == 404
    assert mine.json()["detail"].replace(world.finished_job, "ID") == missing.json()["detail"].replace(
        "01JOBTHATDOESNOTEXIST0000", "ID"
    )


@pytest.mark.parametrize("who", ["none", "malformed", "unknown", "expired", "revoked"])
def test_job_list_and_dashboard_need_a_valid_token(world: World, who: str) -> None:
    """/api/jobs and /api/dashboard refuse every kind of bad credential with 401."""
    for path in ("/api/jobs", "/api/dashboard"):
        with world.server.client() as client:
            answer = client.get(path, headers=world.headers[who])
        assert answer.status_code == 401, (path, answer.text)


@pytest.mark.parametrize("who", ["expired", "revoked", "unknown"])
def test_bad_tokens_cannot_submit(world: World, who: str) -> None:
    """A submit with an expired, revoked or unknown token (header or config) is a 401 and queues nothing."""
    user = {"expired": "expired", "revoked": "revoked", "unknown": "owner"}[who]
    secret = world.headers[who]["Authorization"].split(" ", 1)[1]
    with world.server.client(world.server.admin_token) as admin:
        before = len(admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"])
        with world.server.client(headers=world.headers[who]) as client:
            assert submit(client, "pass", config_yaml(user)).status_code == 401
        with world.server.client() as client:
            assert submit(client, "pass", config_yaml(user, token=secret)).status_code == 401
        assert len(admin.get("/api/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_ledger_verifies_after_the_matrix(world: World) -> None:
    """`gpuledger audit verify` exits 0 after the tokens, jobs and cancels of this module."""
    done = run_cli(
        world.server.root, "audit", "verify", "--db", str(world.server.root / "gpuledger.db"), env=world.server.env
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_guard_runs_on_the_event_loop(tmp_path: Path) -> None:
    """Every guard of every route is a coroutine function: Litestar runs a plain-function guard in its
    thread pool, a thread hop per guard per request (a third of a status read's time)."""
    app = create_app(
        Settings(storage=StorageSettings(database_path=str(tmp_path / "ledger.db"), jobs_dir=str(tmp_path / "jobs")))
    )
    guards = {
        guard
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for layer in handler.ownership_layers
        for guard in layer.guards or []
    }
    assert len(guards) >= 5
    plain = sorted(getattr(g, "__qualname__", repr(g)) for g in guards if not inspect.iscoroutinefunction(g))
    assert plain == []
