"""Replication to S3: ``serve`` runs Litestream to an s3:// target (a moto server on loopback, path-style,
credentials from the environment) and copies blobs there; ``restore --from-replica`` brings the ledger
and every blob back after the server's directory is gone, and the restored copy verifies."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from server import Server, config_yaml, free_port, run_cli, submit, wait_status
from test_replica import check_replica_survives_loss, litestream_pids, replica_env, submitted_ids, wait_replica

from ledger.domain.errors import SettingsError
from ledger.store.settings import load_settings

BUCKET = "gpuledger-replica"
MOTO_START_S = 60  # moto imports a lot; on two shared cores its first start takes a while


@dataclass
class MotoS3:
    endpoint: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it lingers (bounded)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def moto_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1 with one empty bucket, and test credentials in the environment
    (the server and the CLI inherit it); stopped, with its process group, at the end."""
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MOTO_START_S
        while True:
            try:
                httpx.get(f"{endpoint}/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "moto.log").read_text()
                assert time.monotonic() < deadline, "moto did not answer in time"
                time.sleep(0.3)
        assert httpx.put(f"{endpoint}/{BUCKET}", timeout=10).status_code == 200
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        yield MotoS3(endpoint, proc)
    finally:
        MotoS3(endpoint, proc).stop()
        log.close()


@pytest.fixture
def s3_endpoint(moto_s3: MotoS3) -> str:
    return moto_s3.endpoint


def bucket_keys(endpoint: str, prefix: str) -> list[str]:
    """The keys under ``prefix`` in the bucket, read straight from the S3 API (ListObjectsV2)."""
    answer = httpx.get(f"{endpoint}/{BUCKET}", params={"list-type": "2", "prefix": prefix}, timeout=10)
    answer.raise_for_status()
    return [part.split("</Key>", 1)[0] for part in answer.text.split("<Key>")[1:]]


def test_s3_replica_survives_kill_and_loss_of_the_server_directory(
    server_factory, s3_endpoint: str, tmp_path: Path
) -> None:
    """Under submits, kill -9 and deletion of ledger and blobs: the s3:// replica restores every submit
    acknowledged more than REPLICA_LAG_S (or the reported lag) before the kill, with its code blob."""
    replica = {"url": f"s3://{BUCKET}/site/gpuledger", "endpoint": s3_endpoint}
    server = server_factory(max_active_jobs_per_user=10_000, rate_limit_per_minute=10_000, replica=replica)
    check_replica_survives_loss(server, replica, tmp_path / "restored")
    assert any(key.endswith(".ltx") for key in bucket_keys(s3_endpoint, "site/gpuledger/ledger/"))
    assert bucket_keys(s3_endpoint, "site/gpuledger/blobs/"), "no blob reached the bucket"


def test_s3_replica_restores_finished_jobs_with_their_outputs(server_factory, s3_endpoint: str, tmp_path: Path) -> None:
    """Jobs run to the end, the lag the server reports for the s3 target falls to 0, the server and its
    directory go; the restore brings back every job with its status and output, and it verifies."""
    replica = {"url": f"s3://{BUCKET}/finished", "endpoint": s3_endpoint}
    server = server_factory(replica=replica, max_active_jobs_per_user=10)
    block = wait_replica(server, timeout=60)
    assert block["target"] == f"s3://{BUCKET}/finished"
    with server.client(server.admin_token) as client:
        jobs = {}
        for n in range(4):
            jobs[submit(client, f'print("output {n}")\n', config_yaml("admin")).json()["job_id"]] = f"output {n}\n"
        for job_id in jobs:  # a loaded machine runs them slowly: wait, bounded, rather than block a request
            assert wait_status(client, job_id, {"completed"}, timeout=120)["status"] == "completed"
    deadline = time.monotonic() + 30  # the lag as /readyz reports it for the s3 target reaches 0
    while (block := wait_replica(server))["lag_s"] != 0 or block["blobs_sent"] < 8:
        assert time.monotonic() < deadline, block
        time.sleep(0.3)
    assert block["within_goal"], block
    assert block["last_error"] is None, block
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert "gpuledger_replica_lag_seconds 0.0" in metrics
    server.kill()
    time.sleep(0.5)
    assert litestream_pids(server.root / ".litestream.yml") == []
    for path in server.root.glob("gpuledger.db*"):
        path.unlink()
    shutil.rmtree(server.root / "jobs")

    place = tmp_path / "restored"
    place.mkdir()
    done = run_cli(place, "restore", "--from-replica", env=replica_env(replica))
    assert done.returncode == 0, done.stderr
    assert "audit verify ok" in done.stdout
    assert "warning" not in done.stdout  # every blob the events name came back from the bucket
    assert run_cli(place, "audit", "verify").returncode == 0
    again = Server(place, code_scanner_quick_mode=True)
    again.admin_token = server.admin_token
    again.start()
    try:
        with again.client(server.admin_token) as client:
            for job_id, output in jobs.items():
                body = client.get(f"/api/results/{job_id}").json()
                assert (body["status"], body["stdout"], body["exit_code"]) == ("completed", output, 0), body
    finally:
        again.stop()


def test_restore_from_s3_at_a_time(server_factory, s3_endpoint: str, tmp_path: Path) -> None:
    """--at TIME against the bucket: the ledger as it was then (a later submit absent, an earlier one
    present, with its code blob), and it verifies."""
    replica = {"url": f"s3://{BUCKET}/at", "endpoint": s3_endpoint}
    server = server_factory(replica=replica)
    wait_replica(server, timeout=60)
    with server.client(server.admin_token) as client:
        early = submit(client, 'print("early")\n', config_yaml("admin")).json()["job_id"]
        time.sleep(2)
        between = datetime.now(UTC).isoformat()
        time.sleep(2)
        late = submit(client, 'print("late")\n', config_yaml("admin")).json()["job_id"]
    deadline = time.monotonic() + 30
    while (block := wait_replica(server))["lag_s"] != 0:
        assert time.monotonic() < deadline, block
        time.sleep(0.3)
    server.stop()
    (tmp_path / "then").mkdir()
    done = run_cli(tmp_path / "then", "restore", "--from-replica", "--at", between, env=replica_env(replica))
    assert done.returncode == 0, done.stderr
    then = submitted_ids(tmp_path / "then" / "gpuledger.db")
    assert early in then
    assert late not in then
    code = hashlib.sha256(b'print("early")\n').hexdigest()
    assert (tmp_path / "then" / "jobs" / "blobs" / code[:2] / code).read_bytes() == b'print("early")\n'
    assert run_cli(tmp_path / "then", "audit", "verify").returncode == 0


def test_the_lag_of_an_unreachable_bucket_grows_and_readyz_says_why(server_factory, moto_s3: MotoS3) -> None:
    """The bucket goes away after the replica caught up: the lag /readyz and /metrics report grows past
    the goal from its last good value (never stays at 0), last_error says so, and /readyz stays 200."""
    server = server_factory(replica={"url": f"s3://{BUCKET}/outage", "endpoint": moto_s3.endpoint})
    deadline = time.monotonic() + 60
    while (block := wait_replica(server, timeout=60))["lag_s"] != 0:
        assert time.monotonic() < deadline, block
        time.sleep(0.3)
    moto_s3.stop()
    deadline = time.monotonic() + 60
    while (block := wait_replica(server))["lag_s"] <= block["lag_goal_s"] or block["last_error"] is None:
        assert time.monotonic() < deadline, block
        time.sleep(0.3)
    assert not block["within_goal"], block
    assert moto_s3.endpoint.split("//")[1] in block["last_error"] or "outage" in block["last_error"], block
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    lag = next(line for line in metrics.splitlines() if line.startswith("gpuledger_replica_lag_seconds "))
    assert float(lag.split()[1]) > 1.0, lag


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"url": "s3://Bad_Bucket/x"}, "url"),
        ({"url": "s3://bucket/x?endpoint=http://127.0.0.1:9000"}, "url"),
        ({"url": "s3://bucket/x", "endpoint": "127.0.0.1:9000"}, "endpoint"),
        ({"url": "s3://bucket/x", "endpoint": "http://127.0.0.1:9000/path"}, "endpoint"),
        ({"url": "s3://bucket/x", "path_style": "yes"}, "path_style"),
    ],
)
def test_a_bad_s3_replica_table_is_refused_naming_the_key(table: dict[str, object], named: str) -> None:
    """An s3:// url that is no bucket or carries a query, or an endpoint that is no base URL, stops
    start-up with a settings error naming the [replica] key."""
    with pytest.raises(SettingsError, match=rf"at `\$\.replica\.{named}`"):
        load_settings(environ={"GPULEDGER_REPLICA": json.dumps(table)})


def test_an_s3_target_gets_what_it_holds_and_says_false_for_what_it_lacks(s3_endpoint: str, tmp_path: Path) -> None:
    """A blob not in the bucket (a submit acknowledged after the last copy pass) reads as absent, not as
    an error: ``restore --from-replica`` then records its loss instead of failing the whole restore."""
    import asyncio

    from executors.replica_s3 import S3Target
    from executors.replica_target import Target

    target = Target(
        scheme="s3", path="/site/gpuledger", host=BUCKET, endpoint=s3_endpoint, region="eu-west-1", path_style=True
    )
    body = b"print('hello')\n"
    digest = hashlib.sha256(body).hexdigest()
    (tmp_path / "source").write_bytes(body)

    async def scenario() -> tuple[bool, bool, set[str]]:
        s3 = S3Target(target)
        await s3.put(digest, tmp_path / "source")
        held = await s3.get(digest, tmp_path / "back")
        lacked = await s3.get("0" * 64, tmp_path / "absent")
        return held, lacked, await s3.present()

    held, lacked, present = asyncio.run(scenario())
    assert (held, lacked) == (True, False)
    assert (tmp_path / "back").read_bytes() == body
    assert not (tmp_path / "absent").exists()
    assert present == {digest}
