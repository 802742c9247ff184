"""A node that stays unreachable past NODE_LOST_AFTER: its started job fails (node_lost), and the
unreachable node is marked down; admin drain keeps new jobs off a node."""

from __future__ import annotations

from server import config_yaml, submit, wait_status
from test_ssh_failures import _node, _only_node, _start_ticker, _wait_for


def test_started_job_fails_node_lost_after_the_grace(healthy_ssh_cluster, server_factory):
    """A job whose node stays unreachable ends failed/node_lost, not 'finished', and the node goes down."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0", node_lost_after=4.0))
    with server.client(server.admin_token) as client:
        job_id = _start_ticker(client)
        healthy_ssh_cluster.stop("node-0")
        assert client.get(f"/api/status/{job_id}").json()["status"] == "running"  # unreachable is not ended
        body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=60)
        assert (body["status"], body["finish_reason"]) == ("failed", "node_lost")
        assert "unreachable" in client.get(f"/api/results/{job_id}").json()["stderr"]
        _wait_for(lambda: _node(client, "node-0")["status"] == "down", 30, "node-0 marked down")


def test_drained_node_gets_no_new_jobs_until_undrained(healthy_ssh_cluster, server_factory):
    """Drain (admin only) keeps new jobs queued with reason 'node draining'; undrain lets them run."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0"))
    user = server.token("dora")
    with server.client(server.admin_token) as admin, server.client(user) as dora:
        assert dora.post("/api/admin/nodes/node-0/drain").status_code == 403
        drained = admin.post("/api/admin/nodes/node-0/drain?reason=maintenance")
        assert (drained.status_code, drained.json()["status"]) == (200, "draining")
        job_id = submit(admin, "print('after drain')", config_yaml("admin")).json()["job_id"]
        status = wait_status(admin, job_id, {"pending"})
        assert (status["phase"], status["reason"]) == ("queued", "node draining")
        assert admin.post("/api/admin/nodes/node-0/drain").status_code == 409  # already draining
        assert admin.post("/api/admin/nodes/node-0/undrain").json()["status"] in ("idle", "busy")
        assert wait_status(admin, job_id, {"completed"}, timeout=60)["node"] == "node-0"
        types = [e["type"] for e in admin.get(f"/api/jobs/{job_id}/events").json()["events"]]
        assert types.count("job.dispatched") == 1
