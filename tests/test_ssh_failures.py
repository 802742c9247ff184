"""SSH failures end to end: sshd of a node or of the jump host killed mid-job, the server killed,
a node down and back, a changed host key, and LXC restarts between jobs."""

from __future__ import annotations

import json
import time
from collections import Counter

from server import config_yaml, run_cli, submit, wait_status
from test_ssh_jobs import ssh_settings


def _settings(cluster, **overrides):
    """ssh_settings with the per-user rate limit inside its 1..100 range (admins are exempt anyway)."""
    return ssh_settings(cluster, **{"rate_limit_per_minute": 100, **overrides})


LINES = 28
TICKER = f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.25)\n"
TICKER_OUT = "".join(f"line {i}\n" for i in range(LINES))


def _only_node(cluster, name, **overrides):
    settings = _settings(cluster, **overrides)
    settings["nodes"] = [n for n in settings["nodes"] if n["name"] == name]
    return settings


def _events(client, job_id):
    return client.get(f"/api/jobs/{job_id}/events").json()["events"]


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def _node(client, name):
    return next(n for n in client.get("/api/nodes").json()["nodes"] if n["name"] == name)


def _stdout(client, job_id):
    return client.get(f"/api/jobs/{job_id}/logs?stream=stdout").content.decode()


def _start_ticker(client):
    job_id = submit(client, TICKER, config_yaml("admin", expected=120)).json()["job_id"]
    wait_status(client, job_id, {"running"})
    _wait_for(lambda: "line 2\n" in _stdout(client, job_id), 20, "the first lines arrived")
    return job_id


def _assert_collected_once(client, job_id, node):
    body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=60)
    assert (body["status"], body["node"]) == ("completed", node), body
    kinds = Counter(e["type"] for e in _events(client, job_id))
    assert (kinds["job.dispatched"], kinds["job.started"], kinds["job.finished"]) == (1, 1, 1), kinds
    assert _stdout(client, job_id) == TICKER_OUT


def test_node_sshd_killed_mid_job(healthy_ssh_cluster, server_factory):
    """The node's sshd dies mid-job and returns 5 s later: the job completes, collected exactly once."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0"))
    with server.client(server.admin_token) as client:
        job_id = _start_ticker(client)
        healthy_ssh_cluster.stop("node-0")
        time.sleep(5)
        assert client.get(f"/api/status/{job_id}").json()["status"] == "running"  # not read as finished
        healthy_ssh_cluster.start("node-0")
        _assert_collected_once(client, job_id, "node-0")


def test_jump_sshd_killed_mid_job(healthy_ssh_cluster, server_factory):
    """The jump host's sshd dies mid-job and returns 5 s later: the job completes, collected exactly once."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0"))
    with server.client(server.admin_token) as client:
        job_id = _start_ticker(client)
        healthy_ssh_cluster.stop("jump")
        time.sleep(5)
        assert client.get(f"/api/status/{job_id}").json()["status"] == "running"
        healthy_ssh_cluster.start("jump")
        _assert_collected_once(client, job_id, "node-0")


def test_server_killed_mid_job_reattaches(healthy_ssh_cluster, server_factory):
    """kill -9 of the server mid-job: after a restart the job is re-attached, started once, collected whole."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0"))
    with server.client(server.admin_token) as client:
        job_id = _start_ticker(client)
    server.kill()
    time.sleep(1)
    server.start()
    with server.client(server.admin_token) as client:
        _assert_collected_once(client, job_id, "node-0")


def test_down_node_gets_no_jobs_until_it_is_back(healthy_ssh_cluster, server_factory):
    """A node whose sshd is gone turns down and gets no jobs; once back it is idle and used again."""
    server = server_factory(**_settings(healthy_ssh_cluster))
    code = "import time\ntime.sleep(2)\nprint('done')\n"
    with server.client(server.admin_token) as client:
        healthy_ssh_cluster.stop("node-1")
        _wait_for(lambda: _node(client, "node-1")["status"] == "down", 20, "node-1 down")
        jobs = [submit(client, code, config_yaml("admin")).json()["job_id"] for _ in range(2)]
        for job_id in jobs:
            body = wait_status(client, job_id, {"completed", "failed"}, timeout=60)
            assert (body["status"], body["node"]) == ("completed", "node-0"), body
        healthy_ssh_cluster.start("node-1")
        _wait_for(lambda: _node(client, "node-1")["status"] == "idle", 20, "node-1 idle again")
        jobs = [submit(client, code, config_yaml("admin")).json()["job_id"] for _ in range(2)]
        nodes = {wait_status(client, job_id, {"completed", "failed"}, timeout=60)["node"] for job_id in jobs}
        assert nodes == {"node-0", "node-1"}


def test_changed_host_key_keeps_the_node_down(healthy_ssh_cluster, server_factory):
    """A node whose host key changed is down with a host-key reason from the start; jobs go elsewhere."""
    healthy_ssh_cluster.rotate_host_key("node-0")
    server = server_factory(**_settings(healthy_ssh_cluster))
    with server.client(server.admin_token) as client:
        node0 = _node(client, "node-0")
        assert node0["status"] == "down", node0
        assert "host key" in (node0["down_reason"] or "").lower(), node0
        jobs = [submit(client, "print('hi')", config_yaml("admin")).json()["job_id"] for _ in range(3)]
        for job_id in jobs:
            body = wait_status(client, job_id, {"completed", "failed"}, timeout=60)
            assert (body["status"], body["node"]) == ("completed", "node-1"), body
            dispatched = [e["event"]["node"] for e in _events(client, job_id) if e["type"] == "job.dispatched"]
            assert dispatched == ["node-1"]
        assert _node(client, "node-0")["status"] == "down"


def test_lxc_restart_between_jobs(healthy_ssh_cluster, server_factory, tmp_path):
    """With LXC restarts, the restart command runs on the jump host after each job, before the next dispatch."""
    calls = tmp_path / "calls"
    server = server_factory(
        **_only_node(
            healthy_ssh_cluster,
            "node-0",
            lxc_restart_between_jobs=True,
            lxc_restart_command=f"echo {{container}} >> {calls}",
            lxc_restart_wait_time=10,
        )
    )
    with server.client(server.admin_token) as client:
        jobs = [submit(client, "print('hi')", config_yaml("admin")).json()["job_id"] for _ in range(2)]
        for job_id in jobs:
            assert wait_status(client, job_id, {"completed", "failed"}, timeout=60)["status"] == "completed"
        _wait_for(lambda: calls.exists() and calls.read_text().count("\n") >= 2, 20, "two restarts")
        assert calls.read_text() == "gpu-node-0\n" * 2
        db = str(server.root / "gpuledger.db")
        done = _wait_for(lambda: _node_events(server, db, "node.restarted", 2), 20, "two node.restarted events")
        restarting = _node_events(server, db, "node.restarting", 2)
        assert len(restarting or []) == 2
        assert len(done) == 2
        assert all(e["event"]["outcome"] == "ok" for e in done)
        second_dispatch = next(e for e in _events(client, jobs[1]) if e["type"] == "job.dispatched")
        first_finish = next(e for e in _events(client, jobs[0]) if e["type"] == "job.finished")
        assert first_finish["position"] < restarting[0]["position"] < done[0]["position"]
        assert done[0]["position"] < second_dispatch["position"]


def _node_events(server, db, tag, count):
    done = run_cli(server.root, "events", "--type", "node.*", "--json", "--db", db)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    picked = [e for e in events if e.get("type") == tag]
    return picked if len(picked) >= count else None
