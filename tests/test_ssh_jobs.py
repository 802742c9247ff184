"""Jobs on real SSH nodes through a real jump host: the gpuledger server drives two sshd nodes."""

from __future__ import annotations

import pytest
from server import config_yaml, submit


def ssh_settings(cluster, **overrides):
    base = cluster.settings()
    nodes = [
        {"name": n.name, "host": n.host, "port": n.port, "user": n.user, "slots": n.slots, "container": n.container}
        for n in base.ssh.nodes
    ]
    values = {
        "jump_host": base.ssh.jump_host,
        "jump_port": base.ssh.jump_port,
        "jump_user": base.ssh.jump_user,
        "gpu_user": base.ssh.user,
        "ssh_key_file": base.ssh.key_file,
        "ssh_known_hosts": base.ssh.known_hosts,
        "ssh_keepalive_s": 1.0,
        "ssh_connect_timeout_s": 3.0,
        "nodes": nodes,
        "remote_root": base.runner.remote_root,
        "node_probe_interval_s": 0.5,
        "node_down_after_failures": 2,
        "code_scanner_enabled": False,
        "rate_limit_per_minute": 100,
        "max_active_jobs_per_user": 100,
        "endpoint_limits": {"submit": 10000, "status": 100000, "results": 10000, "cancel": 1000, "jobs": 1000},
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("print('ok')", "completed", 0),
        ("raise SystemExit(1)", "failed", 1),
        ("raise SystemExit(42)", "failed", 42),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "failed", 137),
        ("def broken(:\n", "failed", 1),
    ],
)
def test_exit_codes_over_ssh(healthy_ssh_cluster, server_factory, code, status, exit_code):
    """Exit 0, 1, 42, a signal death and a syntax error each end with the right status and code."""
    server = server_factory(**ssh_settings(healthy_ssh_cluster))
    with server.client(server.admin_token) as client:
        body = submit(client, code, config_yaml("admin"), wait=True).json()
        assert (body["status"], body["exit_code"]) == (status, exit_code), body
        if exit_code == 137:
            events = client.get(f"/api/jobs/{body['job_id']}/events").json()["events"]
            assert events[-1]["event"]["signal"] == 9
        if "broken" in code:
            assert "SyntaxError" in body["stderr"]
