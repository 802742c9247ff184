"""A real gpuledger server for tests: ``gpuledger serve`` in a subprocess on a free loopback port.

Real HTTP, the real app, the real local runner and APSW on a real file. The server can be stopped
with SIGTERM or killed with SIGKILL and started again on the same files.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


# Tests poll /api/status from one address: per-address limits are opened up unless a test sets its own.
OPEN_LIMITS = {"submit": 10_000, "status": 10_000, "results": 10_000, "cancel": 10_000, "jobs": 10_000}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=60,
        check=False,
    )


LIVE: set[Server] = set()  # the servers running now: a failed test's report shows their threads


class Server:
    """One server process over one working directory (ledger, jobs dir, log file live there)."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"GPULEDGER_" + k.upper(): _env_value(v) for k, v in settings.items()}
        self.env.setdefault("GPULEDGER_SERVER_HOST", "127.0.0.1")
        self.env.setdefault("GPULEDGER_SERVER_PORT", str(self.port))
        # Each server's ledger reserve is preallocated on the shared test disk: 1 MiB, not 64, unless set.
        self.env.setdefault("GPULEDGER_LEDGER_RESERVE_BYTES", str(1024 * 1024))
        # Tests fail to authenticate often from one address (``wait_token_known`` polls a new token):
        # the failed-authentication throttle is off unless a test sets its own.
        self.env.setdefault("GPULEDGER_AUTH_FAILURE_LIMIT", "0")
        self.preexec: Callable[[], None] | None = None  # run in the server's process before exec
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.admin_token: str | None = None
        self.starts = 0

    def spawn(self) -> None:
        """Start the process without waiting for it (``start`` waits until it is ready)."""
        self.starts += 1
        stderr = (self.root / f"serve-{self.starts}.err").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve"],
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(REPO), **self.env},
            preexec_fn=self.preexec,
        )
        self.ready = False  # until /readyz answers: before then SIGUSR1 may still end the process
        LIVE.add(self)

    def stacks(self) -> str:
        """Every thread's stack in the server now (``serve`` dumps them to stderr on SIGUSR1)."""
        err = self.root / f"serve-{self.starts}.err"
        if self.proc is None or self.proc.poll() is not None or not self.ready:
            return "(not running, or not ready yet)"
        before = err.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        deadline, size = time.monotonic() + 2, before
        while time.monotonic() < deadline:  # written by the signal handler, in C: done once it stops growing
            time.sleep(0.1)
            if size > before and err.stat().st_size == size:
                break
            size = err.stat().st_size
        return err.read_bytes()[before:].decode(errors="replace") or "(nothing written)"

    def start(self) -> None:
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.root / f'serve-{self.starts}.err').read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not become ready within 30 s")
        self.ready = True
        if self.admin_token is None:
            self.admin_token = _printed_token((self.root / "serve-1.err").read_text())

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        LIVE.discard(self)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        LIVE.discard(self)

    def token(self, user: str, *, admin: bool = False, days: int = 30) -> str:
        """A fresh token for ``user`` through the CLI, on the live ledger file (like an admin would)."""
        args = ["token", "create", user, "--days", str(days), *(["--admin"] if admin else [])]
        done = run_cli(self.root, *args, env=self.env)
        assert done.returncode == 0, done.stderr
        secret = _printed_token(done.stdout)
        self.wait_token_known(secret)
        return secret

    def wait_token_known(self, secret: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.url}/api/jobs", headers={"Authorization": f"Bearer {secret}"}, timeout=5)
            if answer.status_code != 401:
                return
            time.sleep(0.05)
        raise AssertionError("the server did not learn the new token in time")

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return str(value)


def _printed_token(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        if "shown once" in line.lower() or line.startswith("token tok_"):
            for candidate in lines[index + 1 :]:
                if candidate and " " not in candidate:
                    return candidate
    raise AssertionError(f"no token printed in: {text!r}")


def config_yaml(user: str, *, competition: str = "comp", expected: int = 30, **extra: Any) -> bytes:
    lines = [f"competition_id: {competition}", "project_id: proj", f"user_id: {user}", f"expected_time: {expected}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\n".join(lines) + "\n").encode()


def submit(
    client: httpx.Client, code: str | bytes, config: bytes, *, wait: bool = False, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = code.encode() if isinstance(code, str) else code
    return client.post(
        f"/api/submit?wait={'true' if wait else 'false'}",
        headers=headers,
        files={"code": ("solution.py", body), "config_file": ("config.yaml", config)},
    )


def wait_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/api/status/{job_id}").json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout} s: {body}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with the threads of every server still running (a frozen one says
    where it is stuck)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for server in list(LIVE):
            report.sections.append((f"threads of the server at {server.url}", server.stacks()))


@contextmanager
def running(root: Path, **settings: Any) -> Iterator[Server]:
    """A server for a whole test module (started once, stopped at the end)."""
    server = Server(root, **settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(**settings: Any) -> Server:
        settings.setdefault("code_scanner_quick_mode", True)
        settings.setdefault("endpoint_limits", OPEN_LIMITS)
        server = Server(tmp_path / f"server{len(servers)}", **settings)
        server.root.mkdir()
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def cli_user(server: Server, tmp_path: Path) -> dict[str, str]:
    """A fresh user for CLI tests: its token in the environment, a private config directory, a config."""
    name = f"u{time.monotonic_ns() % 10**9}"
    (tmp_path / "config.yaml").write_bytes(config_yaml(name, expected=60))
    return {
        "GPULEDGER_URL": server.url,
        "GPULEDGER_TOKEN": server.token(name),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "NAME": name,
    }
