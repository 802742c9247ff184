"""SLURM_CONF from the server's environment reaches every Slurm command, and an unreachable cluster is
logged with what the command answered."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from server import OPEN_LIMITS, Server, config_yaml, submit, wait_status
from slurm import SlurmCluster

from executors.slurm.client import SlurmClient
from executors.transport import LocalTransport


def test_the_servers_slurm_conf_prefixes_local_commands():
    """Without ``[slurm] conf``, the server's SLURM_CONF is passed on; ``conf`` overrides it."""
    local = LocalTransport("slurm")
    assert SlurmClient(local, None, environ={"SLURM_CONF": "/etc/x.conf"}).prefix == ["env", "SLURM_CONF=/etc/x.conf"]
    chosen = SlurmClient(local, None, "/a.conf", environ={"SLURM_CONF": "/b.conf"})
    assert chosen.prefix == ["env", "SLURM_CONF=/a.conf"]
    assert SlurmClient(local, None, environ={}).prefix == []


def _server(root: Path, partition: str, conf: str) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    server = Server(
        root,
        slurm={"partition": partition, "poll_interval_s": 0.5},
        remote_root=str(root / "remote"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
    )
    server.env["SLURM_CONF"] = conf
    return server


def test_slurm_conf_in_the_environment_is_honoured(slurm_cluster: SlurmCluster, tmp_path: Path):
    """A server started with SLURM_CONF set (and no ``conf`` in ``[slurm]``) reaches the cluster and runs a job."""
    server = _server(tmp_path / "env", slurm_cluster.partition, str(slurm_cluster.conf))
    server.start()
    try:
        with server.client(server.admin_token) as client:
            job = submit(client, "print('via SLURM_CONF')\n", config_yaml("admin", expected=60)).json()["job_id"]
            assert wait_status(client, job, {"completed", "failed"}, timeout=90)["status"] == "completed"
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("squeue") is None, reason="Slurm's client commands are not installed")
def test_an_unreachable_cluster_is_logged_with_the_commands_error(tmp_path: Path):
    """SLURM_CONF naming an empty file: ``slurm.started`` says unreachable and carries squeue's own words
    (a missing file would do too, after Slurm's minute of retries)."""
    empty = tmp_path / "empty-slurm.conf"
    empty.write_text("")
    server = _server(tmp_path / "bad", "gpu", str(empty))
    server.spawn()  # not start(): /readyz may stay unready while the only node is down
    log = server.root / "server.log"
    try:
        deadline = time.monotonic() + 30
        started: dict[str, object] = {}
        while not started and time.monotonic() < deadline:
            lines = log.read_text().splitlines() if log.exists() else []
            started = next((json.loads(x) for x in lines if '"slurm.started"' in x), {})
            time.sleep(0.1)
    finally:
        server.stop()
    assert started["reachable"] is False
    assert started["conf"] == str(empty)
    assert "squeue exited" in str(started["error"])
    assert "Unable to process configuration file" in str(started["error"])
