"""SSH nodes: a job lost with its node is killed there (fenced) before its slot takes another job; the
job disk limit and unreadable results hold there too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from server import config_yaml, run_cli, submit, wait_status
from test_ssh_failures import _only_node, _wait_for
from wrapper_jobs import processes_named

pytestmark = pytest.mark.timeout(180)
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"


def test_a_lost_job_is_fenced_before_its_slot_is_reused(healthy_ssh_cluster, server_factory):
    """One slot, its node away past NODE_LOST_AFTER and back: the next job starts only once the lost
    job's process is gone from the node."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0", node_lost_after=3.0))
    with server.client(server.admin_token) as client:
        lost = submit(client, SLEEPER, config_yaml("admin", expected=600)).json()["job_id"]
        wait_status(client, lost, {"running"}, timeout=60)
        marker = f"{lost}/work/solution.py"
        _wait_for(lambda: processes_named(marker), 20, "the first job runs on the node")
        healthy_ssh_cluster.stop("node-0")
        body = wait_status(client, lost, {"failed"}, timeout=60)
        assert body["finish_reason"] == "node_lost"
        following = submit(client, "print('next')\n", config_yaml("admin")).json()["job_id"]
        time.sleep(20)  # long enough for the fence's retries to have backed off, as after a real outage
        assert processes_named(marker), "the lost job kept running on the unreachable node"
        healthy_ssh_cluster.start("node-0")
        deadline = time.monotonic() + 90
        while client.get(f"/api/status/{following}").json()["started_at"] is None:
            assert time.monotonic() < deadline, "the next job never started"
            time.sleep(0.02)
        assert processes_named(marker) == [], "the next job started while the lost one still ran"
        assert wait_status(client, following, {"completed"}, timeout=60)["node"] == "node-0"


def test_the_fence_outlives_a_server_restart(healthy_ssh_cluster, server_factory):
    """One slot, its node away past NODE_LOST_AFTER, the server restarted meanwhile, the node back: the
    ledger records the lost job confirmed dead (node.fenced) before the next job is dispatched there."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0", node_lost_after=3.0))
    with server.client(server.admin_token) as client:
        lost = submit(client, SLEEPER, config_yaml("admin", expected=600)).json()["job_id"]
        wait_status(client, lost, {"running"}, timeout=60)
        marker = f"{lost}/work/solution.py"
        _wait_for(lambda: processes_named(marker), 20, "the first job runs on the node")
        healthy_ssh_cluster.stop("node-0")
        assert wait_status(client, lost, {"failed"}, timeout=60)["finish_reason"] == "node_lost"
    server.stop()
    server.start()  # the node is still away: only the ledger remembers the lost job may run there
    with server.client(server.admin_token) as client:
        following = submit(client, "print('next')\n", config_yaml("admin")).json()["job_id"]
        time.sleep(3)
        assert processes_named(marker), "the lost job kept running on the unreachable node"
        healthy_ssh_cluster.start("node-0")
        assert wait_status(client, following, {"completed"}, timeout=90)["node"] == "node-0"
    assert processes_named(marker) == []
    server.stop()
    lines = run_cli(server.root, "events", "--json", "--db", str(server.root / "gpuledger.db")).stdout.splitlines()
    order = [(e["stream"], e["event"]["type"]) for e in map(json.loads, lines)]
    assert ("node-node-0", "node.fence_required") in order, order
    fenced = order.index(("node-node-0", "node.fenced"))
    assert fenced < order.index((f"job-{following}", "job.dispatched")), order


def test_disk_limit_and_unreadable_results_on_an_ssh_node(healthy_ssh_cluster, server_factory):
    """On an SSH node too: a job past JOB_MAX_DISK ends disk_limit with its workdir gone from the node,
    and a results file that is a directory ends results_unreadable."""
    server = server_factory(**_only_node(healthy_ssh_cluster, "node-0", job_max_disk=8 * 1024 * 1024))
    writer = "import time\nwith open('big', 'wb') as f:\n    for _ in range(40):\n        f.write(b'x' * (1 << 20))\n"
    writer += "time.sleep(60)\n"
    with server.client(server.admin_token) as client:
        big = submit(client, writer, config_yaml("admin")).json()["job_id"]
        body = wait_status(client, big, {"completed", "failed"}, timeout=90)
        assert (body["status"], body["finish_reason"]) == ("failed", "disk_limit"), body
        workdir = Path(healthy_ssh_cluster.root) / "remote" / "jobs" / big
        _wait_for(lambda: not workdir.exists(), 30, "the job's workdir removed on the node")
        odd = submit(client, "import os\nos.mkdir(os.environ['GPULEDGER_RESULTS'])\n", config_yaml("admin"))
        body = wait_status(client, odd.json()["job_id"], {"completed", "failed"}, timeout=90)
        assert (body["status"], body["finish_reason"]) == ("completed", "results_unreadable"), body
