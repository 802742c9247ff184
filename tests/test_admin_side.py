"""The admin's side against a real server: ``node list|drain|undrain`` over HTTP, ``config show --toml``,
the typo guards of ``user set-*``/``user show``, and the hint for ``/api/jobs?user_id=<unknown>``."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import OPEN_LIMITS, Server, config_yaml, run_cli, running, submit, wait_status

from ledger.store.settings import load_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("admin"), code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS) as srv:
        yield srv


def client_env(server: Server, token: str, tmp_path: Path) -> dict[str, str]:
    return {"GPULEDGER_URL": server.url, "GPULEDGER_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path)}


def test_node_drain_and_undrain_over_http(server: Server, tmp_path: Path):
    """``node drain local --reason`` drains it (``node list`` shows why), ``undrain`` brings it back; a
    researcher's token is refused with the server's 403."""
    env = client_env(server, server.admin_token or "", tmp_path)
    drained = run_cli(tmp_path, "node", "drain", "local", "--reason", "fan replaced", env=env)
    assert drained.returncode == 0, drained.stderr
    assert "node local: draining (fan replaced)" in drained.stdout
    listed = run_cli(tmp_path, "node", "list", "--json", env=env)
    node = next(n for n in json.loads(listed.stdout)["nodes"] if n["name"] == "local")
    assert (node["status"], node["drain_reason"]) == ("draining", "fan replaced")
    assert "draining" in run_cli(tmp_path, "node", "list", env=env).stdout
    undrained = run_cli(tmp_path, "node", "undrain", "local", env=env)
    assert undrained.returncode == 0, undrained.stderr
    assert "draining" not in undrained.stdout
    refused = run_cli(tmp_path, "node", "drain", "local", env=client_env(server, server.token("rita"), tmp_path))
    assert refused.returncode == 2
    assert "Admin privileges required" in refused.stderr


def test_config_show_toml_pastes_back_with_sources(tmp_path: Path):
    """The TOML loads back to the same settings, and each value says default, file or env."""
    (tmp_path / "gpuledger.toml").write_text('server_port = 9001\n[slurm]\npartition = "gpu"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPULEDGER_")} | {"GPULEDGER_LOCAL_SLOTS": "3"}
    shown = run_cli(tmp_path, "config", "show", "--toml", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "server_port = 9001 # file" in lines
    assert "local_slots = 3 # env" in lines
    assert 'jobs_dir = "./jobs" # default' in lines
    (tmp_path / "back.toml").write_text(shown.stdout)
    assert tomllib.loads(shown.stdout)["slurm"]["partition"] == "gpu"
    again = load_settings(tmp_path / "back.toml", environ={})
    assert again == load_settings(tmp_path / "gpuledger.toml", environ={"GPULEDGER_LOCAL_SLOTS": "3"})


def test_user_commands_guard_against_typos(server: Server, tmp_path: Path):
    """``user set-share alcie`` warns (no token, no jobs) but a known user's does not; ``user show`` of
    an unknown user exits 1 with a message."""
    server.token("alice")
    typo = run_cli(server.root, "user", "set-share", "alcie", "3", env=server.env)
    assert typo.returncode == 0, typo.stderr
    assert "warning: user 'alcie' has no token and no jobs" in typo.stderr
    known = run_cli(server.root, "user", "set-share", "alice", "2", env=server.env)
    assert known.returncode == 0, known.stderr
    assert "warning" not in known.stderr
    unknown = run_cli(server.root, "user", "show", "nosuchuser", env=server.env)
    assert unknown.returncode == 1
    assert "no user 'nosuchuser'" in unknown.stderr
    assert run_cli(server.root, "user", "show", "alice", env=server.env).returncode == 0


def test_jobs_of_an_unknown_user_come_with_a_hint(server: Server):
    """An admin's ``/api/jobs?user_id=admin_user`` (the old server's habit) keeps ``{"jobs": []}`` and
    adds a warning; a known user's filter and the plain list carry none."""
    with server.client(server.token("bob")) as bob:
        job_id = submit(bob, "print(1)\n", config_yaml("bob")).json()["job_id"]
        wait_status(bob, job_id, {"completed", "failed"})
    with server.client(server.admin_token) as admin:
        unknown = admin.get("/api/jobs", params={"user_id": "admin_user"}).json()
        assert unknown["jobs"] == []
        assert "no user 'admin_user' is known" in unknown["warnings"][0]
        assert "warnings" not in admin.get("/api/jobs", params={"user_id": "bob"}).json()
        assert "warnings" not in admin.get("/api/jobs").json()


def test_submitted_code_and_config_are_for_the_owner_and_admins(server: Server):
    """``GET /api/jobs/{id}/submission``: the owner and admins get the code and config; anyone else a 404."""
    with server.client(server.token("olga")) as olga:
        job_id = submit(olga, "print('olga was here')\n", config_yaml("olga")).json()["job_id"]
        mine = olga.get(f"/api/jobs/{job_id}/submission").json()
    assert (mine["code"], mine["config"]["user_id"]) == ("print('olga was here')\n", "olga")
    with server.client(server.admin_token) as admin:
        assert admin.get(f"/api/jobs/{job_id}/submission").status_code == 200
    with server.client(server.token("peer")) as peer:
        assert peer.get(f"/api/jobs/{job_id}/submission").status_code == 404
