"""A non-root server whose user has subordinate ids (/etc/subuid, /etc/subgid, Debian's uidmap): each
slot's jobs run as a uid of that range, so the server user's private files and other slots' files are
out of reach, and what a job leaves is still removed; without a range, jobs run as today and the log
says why."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from nonroot import ServerUser, delegated_cgroup, owned_dir
from own_accounts import SUBID_FILES, account, first_id, subordinate_ids, sweep_removes_leftover
from server import Server, config_yaml, submit, wait_status
from test_sandbox import ML_JOB, TERMINAL, start_server
from test_sandbox_surface import MINORS, fake_devices, fake_nvidia_smi
from wrapper_jobs import processes_named

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]
SLOTS = 2

JOB = """
import json, os, subprocess
def read(path):
    try:
        return "read %d bytes" % len(open(path, "rb").read())
    except OSError as e:
        return type(e).__name__
os.makedirs("closed/inner")
open("closed/inner/data", "w").write("the job's own")
os.chmod("closed/inner", 0)
os.chmod("closed", 0)
report = {{
    "secret": read({secret!r}),
    "seccomp": [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0],
    "unshare": subprocess.run(["unshare", "-Ur", "true"], capture_output=True).returncode,
    "devices": sorted(n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()),
    "slots": os.environ.get("GPULEDGER_SLOTS", ""),
}}
print(json.dumps(report), flush=True)
os.execvp("bash", ["bash", "-c", "exec -a {marker} sleep 300"])
"""


@contextmanager
def user_server(user: ServerUser, name: str) -> Iterator[tuple[Server, Path]]:
    """A non-root server (local runner, 2 slots, a delegated cgroup, 4 fake GPUs) binding a directory
    that holds a mode-0600 file of the server user: a stand-in for its SSH key. (server, that file)"""
    with ExitStack() as stack:
        base = stack.enter_context(owned_dir(user))
        private = base / "shared"
        private.mkdir()
        secret = private / "id_ed25519"
        secret.write_text("the server user's key\n")
        secret.chmod(0o600)
        devices, tools = fake_devices(base / "dev", 4), fake_nvidia_smi(base / "bin")  # nvidia-smi lists 4 GPUs
        user.own(base)
        parent = stack.enter_context(delegated_cgroup(user, f"gpuledger-ownids-{name}-{uuid.uuid4().hex[:8]}"))
        settings = {"job_readonly_paths": [str(private)], "job_cgroup_parent": parent}
        os.environ["PATH"], saved = f"{tools}:{os.environ['PATH']}", os.environ["PATH"]
        try:
            server = start_server(base / "server", user, local_slots=SLOTS, job_gpu_device_dir=str(devices), **settings)
        finally:
            os.environ["PATH"] = saved
        stack.callback(server.stop)
        yield server, secret


def host_uid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])


def workdirs(server: Server, job_id: str) -> list[Path]:
    return list((server.root / "jobs" / "work" / "jobs").glob(f"{job_id}*"))


def start_sleepers(client: httpx.Client, secret: Path, count: int) -> list[tuple[str, str, int]]:
    """``count`` jobs at once, each asleep after its report: (job id, marker, host pid of its sleep)."""
    jobs = []
    for _ in range(count):
        marker = f"gpuledger-ownids-{uuid.uuid4().hex}"
        code = JOB.format(secret=str(secret), marker=marker)
        jobs.append((submit(client, code, config_yaml("admin", expected=60)).json()["job_id"], marker))
    found: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + 60
    for job_id, marker in jobs:
        while not (pids := processes_named(marker)):
            assert time.monotonic() < deadline, f"never reached its sleep: {client.get(f'/api/status/{job_id}').json()}"
            if client.get(f"/api/status/{job_id}").json()["status"] in TERMINAL:
                stderr = client.get(f"/api/jobs/{job_id}/logs?stream=stderr").text
                raise AssertionError(f"job {job_id} ended before its sleep: {stderr}")
            time.sleep(0.05)
        found.append((job_id, marker, pids[0]))
    return found


def end_all(client: httpx.Client, jobs: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Cancel the sleeping jobs; the report each printed before its sleep."""
    for job_id, _, _ in jobs:
        assert client.post(f"/api/cancel/{job_id}").status_code == 200
    for job_id, _, _ in jobs:
        wait_status(client, job_id, TERMINAL)
    stdouts = [client.get(f"/api/jobs/{job_id}/logs?stream=stdout").text for job_id, _, _ in jobs]
    return [json.loads(stdout.splitlines()[0]) for stdout in stdouts]


@pytest.fixture(scope="module")
def ids_user(server_user: ServerUser) -> Iterator[ServerUser]:
    """This worker's account for the server (tests/own_accounts.py); ``server_user`` only groups these
    tests with the other non-root ones."""
    with account("ids") as user:
        yield user


def test_without_a_range_jobs_run_as_the_server_user_and_the_log_says_why(ids_user: ServerUser) -> None:
    """No line for the server user in /etc/subuid: the job runs as that user (and reads its 0600
    file), and the server's log says once that jobs get no ids of their own, and why."""
    assert not any(ids_user.name in p.read_text() for p in SUBID_FILES), "a range is there already"
    with user_server(ids_user, "none") as (server, secret), server.client(server.admin_token) as client:
        jobs = start_sleepers(client, secret, 1)
        uid = host_uid(jobs[0][2])
        reports = end_all(client, jobs)
        log = (server.root / "server.log").read_text()
    assert uid == ids_user.uid
    assert reports[0]["secret"].startswith("read ")
    lines = [json.loads(line) for line in log.splitlines() if "sandbox.own_ids" in line]
    assert [(e["event"], e["reason"]) for e in lines] == [
        ("sandbox.own_ids_off", f"the node user has no subordinate ids: add '{ids_user.name}:100000:65536' "
         "to /etc/subuid and /etc/subgid")
    ]  # fmt: skip


@pytest.fixture(scope="module")
def own_ids_server(ids_user: ServerUser) -> Iterator[tuple[Server, Path, range]]:
    with subordinate_ids(ids_user, first_id(0)) as ids, user_server(ids_user, "range") as (server, secret):
        yield server, secret, ids


@pytest.fixture(scope="module")
def sleepers(own_ids_server: tuple[Server, Path, range]) -> dict[str, Any]:
    """Two jobs at once (one per slot), seen from the host while they sleep, then cancelled."""
    server, secret, _ = own_ids_server
    with server.client(server.admin_token) as client:
        jobs = start_sleepers(client, secret, SLOTS)
        seen = {
            "uids": [host_uid(pid) for _, _, pid in jobs],
            "cgroups": [Path(f"/proc/{pid}/cgroup").read_text() for _, _, pid in jobs],
            "workdir_owners": [workdirs(server, job_id)[0].joinpath("work").stat().st_uid for job_id, _, _ in jobs],
        }
        reports = end_all(client, jobs)
    return {**seen, "jobs": [job_id for job_id, _, _ in jobs], "reports": reports}


def test_a_job_runs_as_a_subordinate_uid_and_cannot_read_the_server_users_private_file(
    own_ids_server: tuple[Server, Path, range], sleepers: dict[str, Any]
) -> None:
    """Seen from the host, each job runs as a uid of the range, in its own cgroup below the delegated
    parent; inside, the mode-0600 file of the server user is denied, the filter is on, a nested user
    namespace fails and the job sees exactly its own GPU device."""
    server, _, ids = own_ids_server
    assert all(uid in ids for uid in sleepers["uids"]), sleepers["uids"]
    said = [json.loads(line) for line in (server.root / "server.log").read_text().splitlines() if "own_ids" in line]
    span = f"{ids[0]}-{ids[-1]}"
    assert [(e["event"], e["ids"]) for e in said] == [("sandbox.own_ids", f"uids {span}, gids {span}")]
    for cgroup in sleepers["cgroups"]:
        assert "/gpuledger-ownids-range-" in cgroup, cgroup
        assert "/jobs/job-" in cgroup, cgroup
    for report in sleepers["reports"]:
        assert (report["secret"], report["seccomp"]) == ("PermissionError", "2"), report
        assert report["unshare"] != 0
        assert report["devices"] == [f"nvidia{MINORS[int(report['slots'])]}"], report


def test_two_slots_get_different_uids(sleepers: dict[str, Any]) -> None:
    """Two jobs running at once, one per slot, run as two different subordinate uids."""
    assert len(set(sleepers["uids"])) == SLOTS, sleepers["uids"]


def test_the_workdir_is_the_jobs_and_is_removed_after_it(
    own_ids_server: tuple[Server, Path, range], sleepers: dict[str, Any]
) -> None:
    """While it runs a job's workdir belongs to its subordinate uid; after its end the server removes it
    with all it wrote, the mode-000 directory too."""
    server, _, ids = own_ids_server
    assert sleepers["workdir_owners"] == sleepers["uids"]
    assert all(uid in ids for uid in sleepers["workdir_owners"])
    deadline = time.monotonic() + 20
    while any(workdirs(server, job_id) for job_id in sleepers["jobs"]):
        assert time.monotonic() < deadline, [workdirs(server, j) for j in sleepers["jobs"]]
        time.sleep(0.05)


def test_an_ordinary_ml_job_still_works(own_ids_server: tuple[Server, Path, range]) -> None:
    """The server's Python, multiprocessing, a results file the server reads back, /tmp and JOB_ENV all
    work for a job running as its slot's uid (JOB_UID_BASE + n inside, a subordinate uid outside)."""
    server, _, _ = own_ids_server
    code = ML_JOB.replace('print("trained")', 'print("trained", os.getuid())')
    with server.client(server.admin_token) as client:
        body = submit(client, code, config_yaml("admin"), wait=True).json()
        assert (body["status"], body["stdout"]) in {("completed", f"trained {61000 + n}\n") for n in range(SLOTS)}, body
        results = json.loads(client.get(f"/api/results/{body['job_id']}").json()["results"])
    assert results == {"squares": [x * x for x in range(8)], "cuda": "0", "yaml": {"a": 1}, "msgspec": [1]}


def test_the_start_up_sweep_removes_a_leftover_of_subordinate_ids(
    own_ids_server: tuple[Server, Path, range], sleepers: dict[str, Any], ids_user: ServerUser
) -> None:
    """A finished job's workdir left by a crash, its files owned by a subordinate uid behind mode-000
    directories: the next start's sweep removes it (from the same kind of user namespace)."""
    server, _, ids = own_ids_server
    leftover = server.root / "jobs" / "work" / "jobs" / f"{sleepers['jobs'][0]}.9"
    sweep_removes_leftover(server, leftover, ids_user, ids[61000], timeout=20)
