"""Jobs over real sshd through a real jump host: big and binary output, quoting, cancel, live logs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid

from server import config_yaml, submit, wait_status
from test_api_logs import _collect
from test_ssh_jobs import ssh_settings


def _settings(cluster, **overrides):
    """ssh_settings with the per-user rate limit inside its 1..100 range (admins are exempt anyway)."""
    return ssh_settings(cluster, **{"rate_limit_per_minute": 100, **overrides})


MIB = 1024 * 1024
BIG_OUTPUT = """\
import sys
block = bytes(range(256)) * 4096
for i in range(20):
    sys.stdout.buffer.write(i.to_bytes(4, "big") + block[4:])
sys.stdout.buffer.flush()
"""


def _big_expected() -> bytes:
    block = bytes(range(256)) * 4096
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(20))


def _events(client, job_id):
    return client.get(f"/api/jobs/{job_id}/events").json()["events"]


def _pgrep(marker: str) -> list[str]:
    done = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return done.stdout.split()


def test_twenty_mib_of_output_arrives_whole(healthy_ssh_cluster, server_factory):
    """20 MiB of stdout over SSH neither hangs nor loses a byte: size and SHA-256 match via logs."""
    server = server_factory(**_settings(healthy_ssh_cluster))
    expected = _big_expected()
    with server.client(server.admin_token) as client:
        job_id = submit(client, BIG_OUTPUT, config_yaml("admin")).json()["job_id"]
        body = wait_status(client, job_id, {"completed", "failed"}, timeout=90)
        assert body["status"] == "completed", body
        logs = client.get(f"/api/jobs/{job_id}/logs?stream=stdout")
        assert len(logs.content) == 20 * MIB
        assert hashlib.sha256(logs.content).hexdigest() == hashlib.sha256(expected).hexdigest()
        finished = _events(client, job_id)[-1]["event"]
        assert finished["stdout"]["size"] == 20 * MIB
        assert finished["stdout"]["digest"] == hashlib.sha256(expected).hexdigest()
        assert finished["stdout"]["truncated"] is False


def test_binary_and_nul_bytes_are_preserved(healthy_ssh_cluster, server_factory):
    """Non-UTF-8 and NUL bytes on stdout and stderr come back byte for byte over SSH."""
    server = server_factory(**_settings(healthy_ssh_cluster))
    out = b"a\x00b\xff\xfe\xc3(" + bytes(range(256)) + b"\r\n\x00"
    err = b"\x00\x00\x80\xbf\xed\xa0\x80 err"
    code = f"import sys\nsys.stdout.buffer.write({out!r})\nsys.stderr.buffer.write({err!r})\n"
    with server.client(server.admin_token) as client:
        body = submit(client, code, config_yaml("admin"), wait=True).json()
        assert body["status"] == "completed", body
        job_id = body["job_id"]
        assert client.get(f"/api/jobs/{job_id}/logs?stream=stdout").content == out
        assert client.get(f"/api/jobs/{job_id}/logs?stream=stderr").content == err
        assert client.get(f"/api/jobs/{job_id}/logs?stream=stdout&offset=2").content == out[2:]


def test_shell_injection_in_competition_id_is_refused(healthy_ssh_cluster, server_factory, tmp_path):
    """A competition_id with quotes and a command is a 400 at submit, and no job or file appears."""
    server = server_factory(**_settings(healthy_ssh_cluster, job_command="python3 {solution} {competition_id}"))
    pwned = tmp_path / "pwned"
    config = json.dumps(
        {"competition_id": f"x'; touch {pwned}; '", "project_id": "p", "user_id": "admin", "expected_time": 30}
    ).encode()
    with server.client(server.admin_token) as client:
        answer = client.post(
            "/api/submit?wait=false",
            files={"code": ("solution.py", b"print(1)"), "config_file": ("config.json", config)},
        )
        assert answer.status_code == 400, answer.text
        assert "competition_id" in answer.json()["detail"]
        assert client.get("/api/jobs").json()["jobs"] == []
    time.sleep(0.5)
    assert not pwned.exists()


def test_placeholders_reach_the_command_quoted(healthy_ssh_cluster, server_factory, tmp_path):
    """Competition id, workdir and results path reach the job as single argv words, however odd the path."""
    marker = tmp_path / "pwned"
    # The remote root itself is hostile: spaces, quotes, $(...), ; — every remote command must quote it.
    remote_root = healthy_ssh_cluster.root / "remote" / f"odd root '$(touch {marker})'; \"x\" `id`"
    template = "python3 {solution} {competition_id} {workdir} {results}"
    server = server_factory(**_settings(healthy_ssh_cluster, job_command=template, remote_root=str(remote_root)))
    code = (
        "import json, sys\nprint(json.dumps(sys.argv))\n"
        "open(sys.argv[3], 'w').write(json.dumps({'args': sys.argv[1:]}) + '\\n')\n"
    )
    with server.client(server.admin_token) as client:
        body = submit(client, code, config_yaml("admin", competition="a.b-c_d"), wait=True).json()
        assert body["status"] == "completed", (body["stdout"], body["stderr"])
        workdir = f"{remote_root}/jobs/{body['job_id']}/work"  # the job's own directory, in the sandbox
        argv = json.loads(body["stdout"].strip())
        assert argv == [f"{workdir}/solution.py", "a.b-c_d", workdir, f"{workdir}/results.jsonl"]
        assert json.loads(body["results"])["args"] == argv[1:]
    workdir_path = remote_root / "jobs" / body["job_id"]
    deadline = time.monotonic() + 5  # the workdir goes after the finish is recorded
    while workdir_path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not workdir_path.exists()  # removed, so the rm -rf was quoted too
    assert not marker.exists()


def test_cancel_kills_children_that_ignore_sigterm(healthy_ssh_cluster, server_factory):
    """Cancel of a job whose children ignore SIGTERM ends cancelled with none of its processes left."""
    marker = f"gpuledger-cancel-{uuid.uuid4().hex}"
    code = f"""\
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
children = [subprocess.Popen(["{marker}", "300"], executable="sleep") for _ in range(2)]
print("ready", flush=True)
time.sleep(300)
"""
    server = server_factory(**_settings(healthy_ssh_cluster, cancel_grace_s=1.0))
    with server.client(server.admin_token) as client:
        job_id = submit(client, code, config_yaml("admin", expected=600)).json()["job_id"]
        wait_status(client, job_id, {"running"})
        deadline = time.monotonic() + 20
        while len(_pgrep(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_pgrep(marker)) == 2, "the job's children never started"
        answer = client.post(f"/api/cancel/{job_id}")
        assert answer.status_code == 200, answer.text
        body = wait_status(client, job_id, {"cancelled", "completed", "failed"}, timeout=30)
        assert body["status"] == "cancelled", body
        deadline = time.monotonic() + 5
        while _pgrep(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pgrep(marker) == []
        finished = _events(client, job_id)[-1]["event"]
        assert finished["reason"] == "cancelled"


def test_follow_logs_live_and_resume_over_ssh(healthy_ssh_cluster, server_factory):
    """logs?follow=true shows lines while the SSH job runs; a dropped client resumes without loss or repeats."""
    ticker = "import time\nfor i in range(24):\n    print(f'line {i}', flush=True)\n    time.sleep(0.25)\n"
    server = server_factory(**_settings(healthy_ssh_cluster))
    with server.client(server.admin_token) as client:
        job_id = submit(client, ticker, config_yaml("admin")).json()["job_id"]
        wait_status(client, job_id, {"running", "completed"})
        first, ids, _, ended = _collect(client, job_id, last_id=None, stop_after=2)
        assert not ended
        assert client.get(f"/api/status/{job_id}").json()["status"] == "running"  # live, not a replay
        rest, _, _, ended = _collect(client, job_id, last_id=ids[-1], stop_after=None)
        assert ended
        assert "".join(first + rest) == "".join(f"line {i}\n" for i in range(24))
