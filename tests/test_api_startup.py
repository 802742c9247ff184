"""Bind first: the server answers /livez while the ledger loads, /readyz and every API endpoint say 503
until it is loaded, then everything works."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server import OPEN_LIMITS, Server

from ledger.store.schema import connect
from projections.live import open_store


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def _until_answered(url: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = _get(url)
        if answer is not None:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_livez_answers_and_the_rest_is_503_while_the_ledger_loads(tmp_path: Path) -> None:
    """A ledger whose write lock another process holds cannot load: /livez is 200, /readyz and the API
    are 503 with a clear detail; once the lock is released the server becomes ready and serves."""
    root = tmp_path / "server"
    root.mkdir()
    open_store(root / "gpuledger.db").close()  # the file exists and is migrated
    blocker = connect(root / "gpuledger.db")
    blocker.execute("BEGIN IMMEDIATE")  # the server's load waits for this lock
    server = Server(root, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS)
    server.spawn()
    try:
        assert _until_answered(f"{server.url}/livez").status_code == 200
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert (ready.status_code, ready.json()["status"]) == (503, "starting")
        jobs = httpx.get(f"{server.url}/api/jobs", timeout=5)
        assert jobs.status_code == 503
        assert jobs.json()["detail"] == "starting: loading the ledger"
        assert jobs.headers["retry-after"] == "1"
        blocker.execute("ROLLBACK")
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/api/jobs", timeout=5).status_code == 401  # served: authentication runs
    finally:
        blocker.close()
        server.stop()


def test_a_start_that_fails_exits_with_status_1(tmp_path: Path) -> None:
    """A ledger newer than the code: the server binds, reports the failure and exits 1."""
    root = tmp_path / "server"
    root.mkdir()
    conn = connect(root / "gpuledger.db")
    conn.pragma("user_version", 99)
    conn.close()
    server = Server(root)
    server.spawn()
    assert server.proc is not None
    assert server.proc.wait(timeout=30) == 1
    assert "newer" in (root / "serve-1.err").read_text() + (root / "server.log").read_text()


def test_building_the_app_leaves_pydantic_and_attrs_unimported(tmp_path: Path) -> None:
    """The API has only msgspec models: building the app imports no pydantic or attrs plugin (they
    cost a fifth of a second of every start when some other package installed them)."""
    probe = (
        "import sys\n"
        "from api.app import create_app\n"
        "from ledger.store.settings import load_settings\n"
        "app = create_app(load_settings(None))\n"
        "names = {type(plugin).__name__ for plugin in app.plugins}\n"
        "assert 'MsgspecDIPlugin' in names, names\n"
        "print(sorted(m for m in ('pydantic', 'attrs', 'litestar.plugins.pydantic') if m in sys.modules))\n"
    )
    env = {**os.environ, "GPULEDGER_DATABASE_PATH": str(tmp_path / "l.db"), "GPULEDGER_JOBS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
