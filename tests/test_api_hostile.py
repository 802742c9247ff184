"""Hostile input gets a clear 4xx problem document, never a 500 or a stall; streams end with their token.

What is handler logic alone runs on the app in-process (the ``app`` fixture, tests/inprocess.py); what needs a
socket, the HTTP edge or the server's log (body deadlines, streams, parallel load, the access line) on a real
server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from inprocess import InProcess, in_process
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit, wait_status

LOUD_JOB = "for i in range(200_000):\n    print('x' * 100)\n"
SLOW_JOB = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("hostile"),
        endpoint_limits=OPEN_LIMITS,
        rate_limit_per_minute=100,
        max_active_jobs_per_user=20,
        request_body_timeout_s=2,
        sse_heartbeat_s=1,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def alice(server: Server) -> str:
    return server.token("alice")


@pytest.fixture(scope="module")
def job_id(server: Server, alice: str) -> str:
    with server.client(alice) as client:
        job = submit(client, "print('hi')\n", config_yaml("alice")).json()["job_id"]
        wait_status(client, job, {"completed"})
    return str(job)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """The same app in-process (tests/inprocess.py), for what is handler logic alone: parsing, validation, guards."""
    root = tmp_path_factory.mktemp("hostile-app")
    with in_process(root, rate_limit_per_minute=100, max_active_jobs_per_user=20) as app:
        yield app


@pytest.fixture(scope="module")
def app_alice(app: InProcess) -> str:
    return app.token("alice")


@pytest.fixture(scope="module")
def app_job_id(app: InProcess, app_alice: str) -> str:
    with app.client(app_alice) as client:
        job = submit(client, "print('hi')\n", config_yaml("alice")).json()["job_id"]
        wait_status(client, job, {"completed"})
    return str(job)


def problem(answer: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """The answer is a problem document with this status whose detail says these words, no reprs."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body
    for repr_mark in ("<ParamType", "{'", "[{", "\\n"):
        assert repr_mark not in body["detail"], body
    return body


def no_unhandled_errors(server: Server) -> None:
    assert "http.unhandled_error" not in (server.root / "server.log").read_text()


def files(config: bytes, code: bytes = b"print(1)\n") -> dict[str, tuple[str, bytes]]:
    return {"code": ("solution.py", code), "config_file": ("config.yaml", config)}


@pytest.mark.parametrize(
    ("config", "words"),
    [
        pytest.param(b"[" * 60_000, ("nested deeper",), id="nested-brackets"),
        pytest.param(b"a: &x [1]\nb: *x\n", ("aliases",), id="alias"),
        pytest.param(b"expected_time: " + b"9" * 5000 + b"\n", ("expected_time", "digits"), id="long-expected-time"),
        pytest.param(b"project_id: " + b"1" * 5000 + b"\n", ("project_id", "digits"), id="long-project-id"),
        pytest.param(b"expected_time: 2024-13-45\n", ("cannot be read",), id="bad-timestamp"),
        pytest.param(b"".join(b"f%d: 1\n" % i for i in range(40)), ("at most 32 fields",), id="many-fields"),
    ],
)
def test_anonymous_hostile_config_is_a_400_naming_the_problem(app: InProcess, config: bytes, words: tuple[str]) -> None:
    """Without a header the config is read (old clients' token path), by a bounded parser: a 400, not a 500."""
    with app.client() as anonymous:
        problem(anonymous.post("/api/submit", files=files(config)), 400, *words)


def test_a_bad_token_is_refused_before_the_config_is_read(app: InProcess) -> None:
    """An Authorization header is checked before the body: a hostile config behind a bad token is a 401."""
    with app.client("not-a-token") as client:
        problem(client.post("/api/submit", files=files(b"[" * 60_000)), 401, "Invalid token")


def test_nested_configs_in_parallel_leave_the_server_answering(server: Server) -> None:
    """Five hostile configs at once: /livez still answers while they are refused."""
    answers: list[int] = []

    def send() -> None:
        with server.client() as anonymous:
            answers.append(anonymous.post("/api/submit", files=files(b"[" * 60_000)).status_code)

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    with server.client() as client:
        assert client.get("/livez", timeout=5).status_code == 200
    for thread in threads:
        thread.join(30)
    assert answers == [400] * 5


def test_too_many_multipart_parts_is_a_413(app: InProcess, app_alice: str) -> None:
    """40 parts: 413 Payload Too Large, saying the part limit."""
    parts = [(f"part{i}", ("x.txt", b"x")) for i in range(40)]
    with app.client(app_alice) as client:
        problem(client.post("/api/submit", files=parts), 413, "multipart parts")


def test_a_body_shorter_than_its_content_length_times_out_with_408(server: Server) -> None:
    """Content-Length 1000 but 10 bytes sent: 408 after the body timeout, and the connection closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /api/submit HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 1000\r\n\r\n--b\r\nxxxx"
        )
        received = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            received += chunk
        head = received.decode()
    assert head.startswith("HTTP/1.1 408"), head
    assert json.loads(head.split("\r\n\r\n", 1)[1])["status"] == 408


@pytest.mark.parametrize(
    ("path", "headers", "status", "words"),
    [
        ("/api/events/stream?after=abc", {}, 400, ("query parameter after", "integer")),
        ("/api/events/stream?after=-1", {}, 400, ("query parameter after",)),
        ("/api/events/stream", {"Last-Event-ID": "²".encode()}, 400, ("header Last-Event-ID", "non-negative integer")),
        ("/api/jobs/{job}/logs?follow=true", {"Last-Event-ID": "²".encode()}, 400, ("header Last-Event-ID",)),
        ("/api/jobs/{job}/logs?offset=9223372036854775807", {}, 400, ("query parameter offset",)),
        ("/api/jobs/{job}/logs?stream=stdin", {}, 400, ("query parameter stream", "stdout, stderr")),
        ("/api/jobs?status=bogus", {}, 400, ("query parameter status", "pending")),
        ("/api/jobs?status=null", {}, 400, ("query parameter status",)),
        ("/api/jobs?limit=0", {}, 400, ("query parameter limit", ">= 1")),
        ("/api/jobs?limit=1001", {}, 400, ("query parameter limit", "<= 1000")),
    ],
)
def test_bad_parameters_and_headers_are_400s_naming_them(
    app: InProcess, app_alice: str, app_job_id: str, path: str, headers: dict[str, Any], status: int, words: tuple[str]
) -> None:
    """Each bad query parameter or header: a 400 naming it in plain words (no Python reprs)."""
    with app.client(app_alice) as client:
        problem(client.get(path.format(job=app_job_id), headers=headers), status, *words)


@pytest.mark.parametrize(
    ("as_of", "words"),
    [
        ("9223372036854775808", ("as_of", "18 digits")),
        ("²", ("as_of",)),
        ("2024-01-01T00:00:00", ("as_of", "offset")),
        ("yesterday", ("as_of",)),
    ],
)
def test_bad_as_of_is_a_400(app: InProcess, as_of: str, words: tuple[str]) -> None:
    """Admin dashboard ?as_of= out of range or not a time: 400, never an OverflowError."""
    with app.client(app.admin_token) as admin:
        problem(admin.get("/api/dashboard", params={"as_of": as_of}), 400, *words)


@pytest.mark.parametrize("path", ["/api/dashboard", "/dashboard/data/nodes"])
def test_the_api_and_the_web_panels_read_as_of_alike(app: InProcess, path: str) -> None:
    """One as_of parser: a position or a time with its offset is read by both the dashboard API and
    the web panels; a time without its offset, or 19 digits, is the same 400 from both."""
    with app.client(app.admin_token) as admin:
        for good in ("1", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+02:00"):
            assert admin.get(path, params={"as_of": good}).status_code == 200, good
        for bad, words in (("2024-01-01T00:00:00", ("as_of", "offset")), ("9" * 19, ("as_of", "18 digits"))):
            problem(admin.get(path, params={"as_of": bad}), 400, *words)


def test_a_user_gets_403_from_admin_endpoints_and_anonymous_401(app: InProcess, app_alice: str) -> None:
    """The admin guard: 401 without a token, 403 for a user's token."""
    with app.client() as anonymous, app.client(app_alice) as client:
        problem(anonymous.get("/api/dashboard"), 401)
        problem(client.get("/api/dashboard"), 403, "Admin")
        problem(client.post("/api/admin/nodes/local/drain"), 403, "Admin")


def _read_stream(client: httpx.Client, path: str, lines: list[tuple[float, str]]) -> None:
    started = time.monotonic()
    with client.stream("GET", path, timeout=30) as answer:
        for line in answer.iter_lines():
            lines.append((time.monotonic() - started, line))
    lines.append((time.monotonic() - started, "<closed>"))


def test_revoking_a_token_ends_its_open_streams(server: Server, tmp_path: Path) -> None:
    """A revoked token's log follow and event stream stop delivering and close; quiet streams beat."""
    bob = server.token("bob")
    with server.client(bob) as client:
        job = submit(client, SLOW_JOB, config_yaml("bob", expected=120)).json()["job_id"]
        wait_status(client, job, {"running"})
        logs: list[tuple[float, str]] = []
        events: list[tuple[float, str]] = []
        readers = [
            threading.Thread(target=_read_stream, args=(client, f"/api/jobs/{job}/logs?follow=true", logs)),
            threading.Thread(target=_read_stream, args=(client, "/api/events/stream?after=999999", events)),
        ]
        for reader in readers:
            reader.start()
        time.sleep(2.5)
        done = run_cli(server.root, "token", "revoke", bob, env=server.env)
        assert done.returncode == 0, done.stderr
        for reader in readers:
            reader.join(20)
        assert not any(reader.is_alive() for reader in readers)
        assert logs[-1][1] == "<closed>"
        assert events[-1][1] == "<closed>"
        assert ": heartbeat" in [line for _, line in events]
        with server.client(server.admin_token) as admin:
            admin.post(f"/api/cancel/{job}")


def test_a_client_that_disconnects_ends_its_stream_quietly(server: Server, alice: str) -> None:
    """Clients that vanish mid-stream leave no socket.send warnings in the server's log."""
    with server.client(alice) as client:
        job = submit(client, LOUD_JOB, config_yaml("alice", expected=60)).json()["job_id"]
        wait_status(client, job, {"running", "completed"})
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                f"GET /api/jobs/{job}/logs?follow=true HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {alice}\r\n\r\n".encode()
            )
            sock.recv(4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(1)
    log = (server.root / "server.log").read_text() + "".join(p.read_text() for p in server.root.glob("serve-*.err"))
    assert "socket.send() raised exception" not in log


def test_each_request_leaves_one_access_line_with_the_token_id_not_the_token(server: Server, alice: str) -> None:
    """401s and 200s alike: method, path template, status, duration, request id, token id, client."""
    with server.client(alice) as client, server.client() as anonymous:
        ok = client.get("/api/jobs/nope/events")
        refused = anonymous.get("/api/jobs")
    time.sleep(0.5)
    lines = [
        json.loads(line) for line in (server.root / "server.log").read_text().splitlines() if "http.request" in line
    ]
    by_id = {line.get("request_id"): line for line in lines if line.get("event") == "http.request"}
    mine = by_id[ok.headers["x-request-id"]]
    assert (mine["method"], mine["path"], mine["status"], mine["client"]) == (
        "GET",
        "/api/jobs/{job_id}/events",
        404,
        "127.0.0.1",
    )
    assert mine["token_id"].startswith("tok_")
    assert "duration_ms" in mine
    assert by_id[refused.headers["x-request-id"]]["status"] == 401
    assert alice not in (server.root / "server.log").read_text()
