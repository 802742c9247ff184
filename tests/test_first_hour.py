"""What a new user meets in the first hour: the root document, answers that agree, admin commands
that do not create stray ledgers, readable setting errors, the busy port, the saved admin token."""

from __future__ import annotations

import json
import logging
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit

from api.logsetup import QuietRetries
from ledger.store.settings import load_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("first"), code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS) as srv:
        yield srv


def test_root_advertises_only_endpoints_that_answer(server: Server) -> None:
    """Every GET endpoint without a parameter that ``GET /`` lists answers something other than 404."""
    endpoints = httpx.get(f"{server.url}/").json()["endpoints"]
    plain = [spec.split(" ", 1)[1] for spec in endpoints.values() if spec.startswith("GET ") and "{" not in spec]
    assert "/api/jobs" in plain
    for path in plain:
        assert httpx.get(f"{server.url}{path}").status_code != 404, path


def test_sync_submit_answers_the_same_fields_as_results(server: Server) -> None:
    """``wait=true`` carries truncated, reason and results_file, equal to /api/results."""
    code = 'import os\nopen(os.environ["GPULEDGER_RESULTS"], "w").write("r\\n")\nprint("x")\n'
    with server.client(server.admin_token) as client:
        answer = submit(client, code, config_yaml("admin"), wait=True).json()
        results = client.get(f"/api/results/{answer['job_id']}").json()
    for key in ("truncated", "reason", "results_file", "results", "stdout", "exit_code"):
        assert answer[key] == results[key], key
    assert answer["results_file"]


def test_admin_token_is_saved_privately_next_to_the_ledger(server: Server) -> None:
    """The first start writes the printed admin token to a 0600 file and logs no SQLITE_SCHEMA notice."""
    saved = server.root / "admin-token"
    assert saved.read_text().strip() == server.admin_token
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert str(saved) in (server.root / "serve-1.err").read_text()
    assert "SQLITE_SCHEMA" not in (server.root / "server.log").read_text()


def test_short_admin_chosen_tokens_warn_and_fresh_tokens_show_30_days(server: Server) -> None:
    """A 14-character token is accepted with a warning, 13 is refused; ``token list --json`` shows 30 days."""
    short = run_cli(server.root, "token", "create", "username", "user_token_123", env=server.env)
    assert short.returncode == 0, short.stderr
    assert "warning" in short.stderr
    assert run_cli(server.root, "token", "create", "username", "user_token_12", env=server.env).returncode == 2
    listed = json.loads(run_cli(server.root, "token", "list", "--json", env=server.env).stdout)
    mine = [t for t in listed["tokens"] if t["user_id"] == "username"]
    assert [t["days_left"] for t in mine] == [30]


def test_read_only_admin_commands_refuse_a_missing_ledger(tmp_path: Path) -> None:
    """``token list``, ``events``, ``replay``, ``audit verify`` name the missing path and create nothing;
    ``token create`` says it creates the ledger."""
    missing = tmp_path / "nowhere.db"
    for args in (("token", "list"), ("events",), ("replay",), ("audit", "verify")):
        done = run_cli(tmp_path, *args, "--db", str(missing))
        assert done.returncode == 2, args
        assert done.stderr.strip() == (
            f"gpuledger: no ledger at {missing}: run this where the server runs, or pass --db PATH or --config FILE"
        )
        assert not missing.exists()
    created = run_cli(tmp_path, "token", "create", "alice", "--db", str(missing))
    assert created.returncode == 0, created.stderr
    assert f"creating a new ledger at {missing}" in created.stderr


def test_setting_errors_and_limits(tmp_path: Path) -> None:
    """A bad number names the variable and the type; rate limits have no cap and 0 means unlimited."""
    done = run_cli(tmp_path, "config", "show", env={"GPULEDGER_SERVER_PORT": "abc"})
    assert done.stderr.strip() == "gpuledger: GPULEDGER_SERVER_PORT must be an integer, not 'abc'"
    settings = load_settings(
        environ={"GPULEDGER_RATE_LIMIT_PER_MINUTE": "1000", "GPULEDGER_MAX_ACTIVE_JOBS_PER_USER": "0"}
    )
    assert (settings.queue.rate_limit_per_minute, settings.queue.max_active_jobs_per_user) == (1000, 0)


def test_busy_port_is_one_line_with_the_fix(tmp_path: Path) -> None:
    """``serve`` on a port in use prints one line naming it and how to pick another, and exits 2."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_cli(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port} (address already in use)" in done.stderr
    assert f"--port {port + 1}" in done.stderr


def test_version(tmp_path: Path) -> None:
    """``gpuledger --version`` prints the version."""
    assert run_cli(tmp_path, "--version").stdout.strip() == "gpuledger 0.1.0"


def test_nodes_absent_from_the_settings_are_retired(tmp_path: Path) -> None:
    """Switching local -> SSH nodes -> local retires the nodes no longer configured; jobs run on the rest."""
    root = tmp_path / "srv"
    root.mkdir()
    ssh_node = [{"name": "gpu-a", "host": "127.0.0.1", "port": 1, "user": "nobody"}]
    local = Server(root, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS)
    local.start()
    local.stop()
    remote = Server(root, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS, nodes=ssh_node)
    remote.admin_token = local.admin_token
    remote.starts = local.starts
    remote.start()
    try:
        assert [n["name"] for n in httpx.get(f"{remote.url}/api/nodes").json()["nodes"]] == ["gpu-a"]
    finally:
        remote.stop()
    again = Server(root, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS)
    again.admin_token = local.admin_token
    again.starts = remote.starts
    again.start()
    try:
        assert [n["name"] for n in httpx.get(f"{again.url}/api/nodes").json()["nodes"]] == ["local"]
        with again.client(again.admin_token) as client:
            done = submit(client, "print('ran')", config_yaml("admin"), wait=True).json()
        assert (done["status"], done["stdout"]) == ("completed", "ran\n")
    finally:
        again.stop()
    events = run_cli(root, "events", "--type", "node.*", "--json", "--db", str(root / "gpuledger.db"))
    retired = [json.loads(line)["stream"] for line in events.stdout.splitlines() if "node.retired" in line]
    assert retired == ["node-local", "node-gpu-a"]


def test_retry_noise_is_filtered_and_warnings_kept() -> None:
    """asyncssh's info lines and SQLite's SQLITE_SCHEMA notice are dropped; warnings and our lines pass."""

    def record(name: str, level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)

    quiet = QuietRetries()
    assert not quiet.filter(record("asyncssh", logging.INFO, "Opening SSH connection to 10.0.0.1, port 22"))
    assert quiet.filter(record("asyncssh", logging.WARNING, "Connection failure"))
    schema = "SQLITE_LOG: statement aborts at 13: database schema has changed (17) SQLITE_SCHEMA"
    assert not quiet.filter(record("apsw", logging.INFO, schema))
    assert quiet.filter(record("gpuledger", logging.INFO, "node.down"))
