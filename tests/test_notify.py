"""End-of-job notifications on a real server over HTTP, to a webhook receiver on loopback: one delivery
per ended job (across a kill -9 between the end and the delivery), notify.failed after the bounded
tries, NOTIFY_ALLOWED refusing at submit, and an apprise target (json://) set as a user's default."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit

ALLOWED = ["http://127.0.0.1:*", "json://127.0.0.1:*"]


class Receiver:
    """A webhook receiver: records every POST (path, body, the status it answered); ``answer`` per path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], int]] = []
        self.answer: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                status = receiver.answer.get(self.path, 200)
                receiver.posts.append((self.path, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def at(self, path: str, status: int | None = None) -> list[dict[str, Any]]:
        return [body for p, body, answered in self.posts if p == path and status in (None, answered)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.http.shutdown()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {"notify_allowed": ALLOWED, "notify_attempts": 3, "notify_backoff_s": 0.05}
    with running(tmp_path_factory.mktemp("notify"), **_open(settings)) as found:
        yield found


def _open(settings: dict[str, Any]) -> dict[str, Any]:
    return {"endpoint_limits": OPEN_LIMITS, "rate_limit_per_minute": 0, "max_active_jobs_per_user": 0, **settings}


def _notify_config(*targets: str) -> bytes:
    return config_yaml("admin", notify=json.dumps(list(targets)))


def _events(client: httpx.Client, job_id: str, kind: str) -> list[dict[str, Any]]:
    events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
    return [e for e in events if e["type"] == kind]


def _wait_event(client: httpx.Client, job_id: str, kind: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _events(client, job_id, kind)
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} for job {job_id} within {timeout} s")


def _wait(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_one_delivery_per_job_across_a_kill_between_its_end_and_the_delivery(server_factory, receiver):
    """The receiver refuses the first try, the server is killed -9 before the next, and after the restart
    the webhook gets exactly one accepted POST (the documented payload) and the job one notify.delivered."""
    receiver.answer["/restart"] = 503
    server = server_factory(**_open({"notify_allowed": ALLOWED, "notify_attempts": 20, "notify_backoff_s": 2.0}))
    with server.client(server.admin_token) as client:
        job_id = submit(client, "print('hi')", _notify_config(receiver.url("/restart"))).json()["job_id"]
        _wait(lambda: receiver.at("/restart"))  # the end is durable and the first try was refused
    server.kill()
    receiver.answer["/restart"] = 200
    server.start()
    with server.client(server.admin_token) as client:
        delivered = _wait_event(client, job_id, "notify.delivered")
        time.sleep(0.5)  # room for a second send, were there one
        assert len(_events(client, job_id, "notify.delivered")) == 1
        assert _events(client, job_id, "notify.failed") == []
    taken = receiver.at("/restart", 200)
    assert len(taken) == 1, taken
    assert {k: taken[0][k] for k in ("job_id", "user_id", "status", "exit_code", "delivery_id")} == {
        "job_id": job_id,
        "user_id": "admin",
        "status": "completed",
        "exit_code": 0,
        "delivery_id": f"{job_id}.0",
    }
    assert taken[0]["finished_at"]
    assert taken[0]["link"].endswith(f"/api/status/{job_id}")
    assert (delivered["event"]["attempts"], delivered["actor"]) == (1, "notifier")


def test_a_failing_receiver_ends_in_notify_failed_after_the_bounded_tries(shared, receiver):
    """A receiver answering 500 gets NOTIFY_ATTEMPTS (3) POSTs, one answering 404 a single one (a refusal
    for good); each of the job's two targets then has one notify.failed."""
    receiver.answer.update({"/broken": 500, "/gone": 404})
    targets = (receiver.url("/broken"), receiver.url("/gone"))
    with shared.client(shared.admin_token) as client:
        job_id = submit(client, "print('x')", _notify_config(*targets)).json()["job_id"]
        _wait(lambda: len(_events(client, job_id, "notify.failed")) == 2)
        failed = sorted((e["event"] for e in _events(client, job_id, "notify.failed")), key=lambda e: e["target"])
        assert _events(client, job_id, "notify.delivered") == []
    assert [(f["target"], f["attempts"]) for f in failed] == [(0, 3), (1, 1)]
    assert "500" in failed[0]["error"]
    assert "404" in failed[1]["error"]
    assert (len(receiver.at("/broken")), len(receiver.at("/gone"))) == (3, 1)


def test_targets_outside_notify_allowed_or_malformed_are_refused_at_submit(shared):
    """A target NOTIFY_ALLOWED does not cover, or one that is no URL, is a 400 naming it; nothing is queued."""
    with shared.client(shared.admin_token) as client:
        before = len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"])
        refused = submit(client, "print(1)", _notify_config("https://example.com/hook"))
        malformed = submit(client, "print(1)", _notify_config("example.com/hook"))
        unknown = submit(client, "print(1)", config_yaml("admin", notify="{a: 1}"))
        after = len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"])
    assert refused.status_code == 400, refused.text
    assert "https://example.com" in refused.json()["detail"]
    assert "NOTIFY_ALLOWED" in refused.json()["detail"]
    assert (malformed.status_code, unknown.status_code) == (400, 400)
    assert "not a URL" in malformed.json()["detail"], malformed.text
    assert "Invalid field notify" in unknown.json()["detail"], unknown.text
    assert after == before


def test_a_users_default_apprise_target_is_told_and_can_be_cleared(shared, receiver, tmp_path: Path):
    """`gpuledger user set-notify json://...` sets the caller's default; a job with no notify: in its
    config is told through apprise's json:// service; --clear empties the default."""
    token = shared.token("alice")
    env = {"GPULEDGER_URL": shared.url, "GPULEDGER_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    target = receiver.url("/apprise", scheme="json")
    done = run_cli(tmp_path, "user", "set-notify", target, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    refused = run_cli(tmp_path, "user", "set-notify", "https://example.com/x", env=env)
    assert refused.returncode != 0
    assert "NOTIFY_ALLOWED" in refused.stdout + refused.stderr
    with shared.client(token) as client:
        assert client.get("/api/me/notify").json() == {"user_id": "alice", "targets": [target]}
        job_id = submit(client, "print('x')", config_yaml("alice")).json()["job_id"]
        _wait_event(client, job_id, "notify.delivered")
    told = receiver.at("/apprise", 200)
    assert len(told) == 1, told
    assert told[0]["title"] == f"gpuledger job {job_id} completed"
    cleared = run_cli(tmp_path, "user", "set-notify", "--clear", "--json", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout) == {"targets": []}
