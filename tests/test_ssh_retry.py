"""A node lost mid-job with real sshd nodes: a job with ``retries: 1`` runs again on the other node and
completes as attempt 2 of the same job; without retries it still ends node_lost (test_ssh_lost)."""

from __future__ import annotations

from collections import Counter

from server import config_yaml, run_cli, submit, wait_status
from test_ssh_failures import TICKER, TICKER_OUT, _settings, _stdout, _wait_for


def test_job_retried_on_the_other_node_after_its_node_is_lost(healthy_ssh_cluster, server_factory):
    """Node of attempt 1 stops answering: job.retried (node_lost), attempt 2 elsewhere completes with the
    whole output; one job id, both attempts in its events, the projections verify."""
    server = server_factory(**_settings(healthy_ssh_cluster, node_lost_after=4.0))
    with server.client(server.admin_token) as client:
        job_id = submit(client, TICKER, config_yaml("admin", expected=120, retries=1)).json()["job_id"]
        first = wait_status(client, job_id, {"running"})
        _wait_for(lambda: "line 2\n" in _stdout(client, job_id), 20, "the first lines arrived")
        healthy_ssh_cluster.stop(first["node"])
        body = wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=90)
        assert (body["status"], body["attempt"], body["max_attempts"]) == ("completed", 2, 2), body
        assert body["node"] != first["node"]
        assert [(a["attempt"], a["node"], a["reason"]) for a in body["attempts"]] == [(1, first["node"], "node_lost")]
        events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
        kinds = Counter(e["type"] for e in events)
        assert (kinds["job.dispatched"], kinds["job.started"], kinds["job.retried"], kinds["job.finished"]) == (
            2,
            2,
            1,
            1,
        )
        retried = next(e["event"] for e in events if e["type"] == "job.retried")
        assert (retried["attempt"], retried["reason"]) == (1, "node_lost")
        assert client.get(f"/api/results/{job_id}").json()["stdout"] == TICKER_OUT
    done = run_cli(server.root, "audit", "verify", "--db", str(server.root / "gpuledger.db"), env=server.env)
    assert done.returncode == 0, done.stdout + done.stderr
