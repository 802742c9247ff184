"""Connections and guessing bounded, limits per identity: over real HTTP on loopback.

Other client addresses are other loopback addresses (127.0.0.2, ...): Linux routes all of 127/8 to
the loopback interface, so a test can be several clients without a proxy in between.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli

HEAD_TIMEOUT_S = 2.0


def client_from(server: Server, source: str, token: str | None = None, timeout: float = 10) -> httpx.Client:
    """An HTTP client whose connections come from the loopback address ``source``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, headers=headers, timeout=timeout, transport=transport)


def open_sockets(server: Server, source: str, count: int) -> list[socket.socket]:
    return [
        socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(source, 0))
        for _ in range(count)
    ]


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed it (EOF or reset), seen without waiting."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    with contextlib.suppress(OSError):  # readable: EOF, a reset, or a last answer before the close
        sock.recv(4096)
    return True


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


@pytest.fixture
def edge_server(tmp_path: Path) -> Iterator[Server]:
    """A server with a 2 s request-head deadline and open endpoint limits."""
    server = Server(tmp_path, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS, http_header_timeout_s=2)
    server.start()
    yield server
    server.stop()


def test_idle_and_partial_head_connections_are_closed_after_the_header_timeout(edge_server: Server) -> None:
    """200 silent connections and 100 slowloris heads are closed after the head deadline; others are served."""
    idle = open_sockets(edge_server, "127.0.0.2", 100) + open_sockets(edge_server, "127.0.0.3", 100)
    slow = open_sockets(edge_server, "127.0.0.4", 100)
    try:
        for sock in slow:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        assert not any(closed_by_server(s) for s in slow), "refused or closed at once"
        started = time.monotonic()
        with edge_server.client() as normal:
            while time.monotonic() - started < HEAD_TIMEOUT_S + 3:
                assert normal.get("/livez").status_code == 200
                for sock in slow:  # a header line now and then: trickling does not extend the deadline
                    if not closed_by_server(sock):
                        sock.sendall(b"X-Slow: y\r\n")
                time.sleep(0.3)
        still_open = [s for s in idle + slow if not closed_by_server(s)]
        assert not still_open, f"{len(still_open)} of 300 connections still open"
    finally:
        close_all(idle + slow)


def test_a_keep_alive_connection_must_send_its_next_head_in_time(edge_server: Server) -> None:
    """After one answered request, a partial second head is closed after the deadline as well."""
    (sock,) = open_sockets(edge_server, "127.0.0.2", 1)
    try:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /livez HTTP/1.1\r\n")
        time.sleep(HEAD_TIMEOUT_S + 1.5)
        assert closed_by_server(sock)
    finally:
        sock.close()


def low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))


def test_more_connections_than_the_descriptors_allow_never_fail_a_submit(tmp_path: Path) -> None:
    """Under RLIMIT_NOFILE 512, 500 open connections: submits get 200 or 503, never 500; the log stays small."""
    server = Server(
        tmp_path,
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        http_header_timeout_s=3,
        max_active_jobs_per_user=0,
        rate_limit_per_minute=0,
    )
    server.preexec = low_nofile
    server.start()
    flood: list[socket.socket] = []
    try:
        token = server.token("alice")
        for n in range(2, 7):  # 5 addresses x 100: under the per-address cap (128), over the total (384)
            flood += open_sockets(server, f"127.0.0.{n}", 100)
        answers = []
        started = time.monotonic()
        with server.client(token, timeout=5) as client:
            while time.monotonic() - started < 8:
                try:
                    answer = client.post(
                        "/api/submit?wait=false",
                        files={"code": ("s.py", b"print(1)\n"), "config_file": ("c.yaml", config_yaml("alice"))},
                    )
                    answers.append(answer.status_code)
                except httpx.TransportError:
                    answers.append(0)  # refused at the door: closed before the request was read
                time.sleep(0.2)
        assert 500 not in answers, answers
        assert set(answers) <= {200, 503, 0}, answers
        assert answers[-1] == 200, answers  # served again once the silent connections were closed
        log = (tmp_path / "server.log").read_text()
        assert len(log) < 1_000_000
        assert log.count("out of system resource") == 0  # the cap and the backlog leave descriptors free
    finally:
        close_all(flood)
        server.stop()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Server]:
    """A server that throttles after 100 failed authentications per address per minute."""
    server = Server(
        tmp_path,
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        auth_failure_limit=100,
        auth_failure_window_s=60,
    )
    server.start()
    yield server
    server.stop()


def test_wrong_tokens_are_throttled_while_a_valid_token_keeps_working(guarded: Server) -> None:
    """300 wrong tokens from one address: 100 x 401, then 429 with Retry-After; known valid tokens still work."""
    alice, bob, carol = guarded.token("alice"), guarded.token("bob"), guarded.token("carol")
    with client_from(guarded, "127.0.0.5", alice) as known, client_from(guarded, "127.0.0.6", bob) as elsewhere:
        assert known.get("/api/jobs").status_code == 200  # alice's token has worked from 127.0.0.5
        codes = []
        for n in range(300):
            answer = known.get("/api/jobs", headers={"Authorization": f"Bearer wrong-token-{n:04d}"})
            codes.append(answer.status_code)
            if answer.status_code == 429:
                assert 1 <= int(answer.headers["retry-after"]) <= 60
                assert "Too many failed authentications" in answer.json()["detail"]
                assert answer.json()["limited"] == "address 127.0.0.5"
            if n % 50 == 0:
                assert known.get("/api/jobs").status_code == 200
                assert elsewhere.get("/api/jobs").status_code == 200
        assert codes == [401] * 100 + [429] * 200
        assert known.get("/api/jobs").status_code == 200
        # A token never used from the blocked address waits too: that is what bounds the guessing.
        assert known.get("/api/jobs", headers={"Authorization": f"Bearer {carol}"}).status_code == 429


def test_chosen_tokens_have_at_least_14_characters(edge_server: Server) -> None:
    """A 13-character chosen token is refused with the reason; the seed's ``user_token_123`` is accepted."""
    short = run_cli(edge_server.root, "token", "create", "dave", "user_token_12", env=edge_server.env)
    assert short.returncode == 2
    assert "at least 14 characters long, not 13" in short.stderr
    seed = run_cli(edge_server.root, "token", "create", "dave", "user_token_123", env=edge_server.env)
    assert seed.returncode == 0, seed.stderr
    edge_server.wait_token_known("user_token_123")


@pytest.fixture
def status_limited(tmp_path: Path) -> Iterator[Server]:
    """Three status requests a minute; submits limited to 2 a minute."""
    limits = {**OPEN_LIMITS, "status": 3, "submit": 2}
    server = Server(tmp_path, code_scanner_quick_mode=True, endpoint_limits=limits, max_active_jobs_per_user=0)
    server.start()
    yield server
    server.stop()


def test_two_users_from_one_address_do_not_share_limits(status_limited: Server) -> None:
    """Alice's polling makes alice 429 (naming her), never bob; anonymous callers are limited per address."""
    alice, bob = status_limited.token("alice"), status_limited.token("bob")
    with status_limited.client(alice) as as_alice, status_limited.client(bob) as as_bob:
        assert [as_alice.get("/api/status/nosuchjob").status_code for _ in range(3)] == [404] * 3
        refused = as_alice.get("/api/status/nosuchjob")
        assert refused.status_code == 429
        detail = refused.json()["detail"]
        assert detail.startswith(
            "Rate limit exceeded for status requests by user alice: maximum 3 per 60s. Retry after "
        )
        assert detail == f"{detail.split(' Retry after ')[0]} Retry after {refused.headers['retry-after']}s."
        assert refused.json()["limited"] == "user alice"
        assert [as_bob.get("/api/status/nosuchjob").status_code for _ in range(3)] == [404] * 3
    with client_from(status_limited, "127.0.0.7") as anonymous, client_from(status_limited, "127.0.0.8") as other:
        assert [anonymous.get("/api/status/x").status_code for _ in range(4)] == [401, 401, 401, 429]
        assert "from address 127.0.0.7" in anonymous.get("/api/status/x").json()["detail"]
        assert other.get("/api/status/x").status_code == 401


def test_the_submit_endpoint_limit_keeps_the_old_text(status_limited: Server) -> None:
    """The per-user submit endpoint limit answers in the old server's exact words, and says whose it is."""
    token = status_limited.token("erin")
    files = {"code": ("s.py", b"print(1)\n"), "config_file": ("c.yaml", config_yaml("erin"))}
    with status_limited.client(token) as client:
        codes = [client.post("/api/submit?wait=false", files=files).status_code for _ in range(2)]
        assert codes == [200, 200]
        refused = client.post("/api/submit?wait=false", files=files)
    assert refused.status_code == 429
    retry = refused.headers["retry-after"]
    assert refused.json()["detail"] == f"Rate limit exceeded. Maximum 2 requests per 60s. Retry after {retry}s."
    assert (refused.json()["rate_limit"], refused.json()["limited"]) == ("submit", "user erin")
