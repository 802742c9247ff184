"""Hostile jobs against the node's memory, processes and CPU, on a real server (local runner and SSH
nodes): each runs in its own cgroup, and the server outlives every one of them.

The test server runs inside a 1.5 GiB cgroup v1 memory cgroup (the "cage") that stands in for the
host's RAM, and JOB_CGROUP_PARENT puts the jobs' own cgroups below it, so nothing here can take the
machine's memory or processes: on code without job cgroups these attacks fill the cage instead, and
the kernel kills whatever it likes inside it (the server, as issue 20 saw).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from nonroot import MODES, ServerUser, delegated_cgroup, owned_dir
from server import OPEN_LIMITS, Server, config_yaml, submit, wait_status
from test_ssh_jobs import ssh_settings

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("require_sandbox")]
CGROUP_V1 = Path("/sys/fs/cgroup")
CAGE_BYTES = 1536 << 20
CAGE_PIDS = 2048
JOB_MEMORY = 256 << 20  # each job's limit in these tests (two slots of a 512 MiB node)
MAX_PROCESSES = 128


@contextmanager
def memory_cage() -> Iterator[str]:
    """A v1 memory (and pids) cgroup for the server and, below it, its jobs; torn down afterwards."""
    if not (CGROUP_V1 / "memory" / "memory.limit_in_bytes").exists() or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    name = f"gpuledger-test-{uuid.uuid4().hex[:8]}"
    memory, pids = CGROUP_V1 / "memory" / name, CGROUP_V1 / "pids" / name
    memory.mkdir()
    pids.mkdir()
    try:
        (memory / "memory.limit_in_bytes").write_text(str(CAGE_BYTES))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(str(CAGE_BYTES))
        (pids / "pids.max").write_text(str(CAGE_PIDS))
        yield name
    finally:
        for controller in ("memory", "pids", "cpu"):
            remove_tree(CGROUP_V1 / controller / name)


def remove_tree(top: Path) -> None:
    """Children first; whatever still runs in it (nothing should) goes back to the root cgroup."""
    if not top.exists():
        return
    for directory in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), top]:
        for pid in (directory / "cgroup.procs").read_text().split():
            (top.parent / "cgroup.procs").write_text(pid)
        directory.rmdir()


class CagedServer(Server):
    """A test server moved into the cage the moment it exists (its children follow it there)."""

    cage = ""

    def spawn(self) -> None:
        super().spawn()
        assert self.proc is not None
        (CGROUP_V1 / "memory" / self.cage / "cgroup.procs").write_text(str(self.proc.pid))


def caged_server(root: Path, cage: str, user: ServerUser | None = None, **settings: Any) -> CagedServer:
    """Started as root, or as ``user`` (tests/nonroot.py), whose delegated subtree is then ``cage/jobs``."""
    root.mkdir()
    settings.setdefault("job_cgroup_parent", f"{cage}/jobs")
    server = CagedServer(
        root,
        code_scanner_enabled=False,
        endpoint_limits=OPEN_LIMITS,
        rate_limit_per_minute=1000,
        max_active_jobs_per_user=100,
        cancel_grace_s=1,
        job_max_processes=MAX_PROCESSES,
        **settings,
    )
    server.cage = cage
    if user is not None:
        user.adopt(server)
    server.start()
    return server


def host_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


@pytest.fixture(scope="module", params=MODES)
def local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CagedServer]:
    """Two local slots; JOB_MEMORY_SHARE chosen so each slot's default is 256 MiB on this host. The
    server runs as root, or as an ordinary user with ``cage/jobs`` delegated to it."""
    user: ServerUser | None = request.getfixturevalue("server_user") if request.param == "user" else None
    with memory_cage() as cage, ExitStack() as stack:
        base = stack.enter_context(owned_dir(user)) if user else tmp_path_factory.mktemp("resources")
        parent = stack.enter_context(delegated_cgroup(user, cage)) if user else f"{cage}/jobs"
        share = 2 * JOB_MEMORY / host_memory()
        server = caged_server(
            base / "server", cage, user, local_slots=2, job_memory_share=share, job_cgroup_parent=parent
        )
        try:
            yield server
        finally:
            server.stop()


def run_job(server: Server, code: str, **config: Any) -> dict[str, Any]:
    with server.client(server.admin_token, timeout=120) as client:
        response = submit(client, code, config_yaml("admin", expected=60, **config), wait=True)
        assert response.status_code == 200, response.text
        return dict(response.json())


def can_lower_oom_scores() -> bool:
    """CAP_SYS_RESOURCE (bit 24), which lowering oom_score_adj needs; some containers drop it from root."""
    effective = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff"))
    return bool(int(effective.split()[1], 16) & (1 << 24))


def assert_server_survived(server: Server) -> None:
    """Same process as before the attack, answering /livez, and never the kernel's first choice."""
    assert server.proc is not None
    assert server.proc.poll() is None, "the server was killed"
    adj = Path(f"/proc/{server.proc.pid}/oom_score_adj").read_text().strip()
    as_root = Path(f"/proc/{server.proc.pid}/status").read_text().split("Uid:")[1].split()[0] == "0"
    assert adj == ("-900" if as_root and can_lower_oom_scores() else "0")  # only root may lower it
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200


def assert_out_of_memory(body: dict[str, Any], limit: int = JOB_MEMORY) -> None:
    assert (body["status"], body["reason"]) == ("failed", "out_of_memory"), body
    assert f"memory limit of {limit >> 20} MiB" in body["stderr"], body["stderr"]


FILL = """
import os
size = 0
try:
    with open({path!r}, "wb") as f:
        while True:
            f.write(b"\\1" * (1 << 20))
            f.flush()
            size += 1 << 20
except OSError as e:
    print("full at", size, e.errno, flush=True)
hold = []
while True:  # then take ordinary memory too, as a job that also loads its data would
    hold.append(b"\\1" * (1 << 20))
"""


@pytest.mark.parametrize("where", ["/dev/shm/fill", "/tmp/fill"])
def test_filling_a_tmpfs_is_held_to_the_jobs_memory(local: CagedServer, where: str) -> None:
    """A job filling /dev/shm or /tmp stops at the tmpfs's size (half its memory limit), is killed at
    its memory limit, ends failed/out_of_memory naming the limit, and the server lives on."""
    body = run_job(local, FILL.format(path=where))
    assert_out_of_memory(body)
    full_at = int(body["stdout"].split()[2])
    assert full_at <= JOB_MEMORY // 2, body["stdout"]
    assert_server_survived(local)


CHILDREN = """
import os, time
children = []
for _ in range(64):
    pid = os.fork()
    if pid == 0:
        block = b"\\1" * (32 << 20)
        time.sleep(20)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print("every child ended")
"""


def test_64_children_of_32_mib_end_out_of_memory(local: CagedServer) -> None:
    """64 children of 32 MiB (2 GiB in all): the kernel kills children inside the job's cgroup; the job
    ends failed/out_of_memory even though its main process exits 0, and the server lives on."""
    body = run_job(local, CHILDREN)
    assert_out_of_memory(body)
    assert_server_survived(local)


FORK_BOMB = """
import json, os, resource, time
count = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        count += 1
except OSError as e:
    print(json.dumps({"forked": count, "errno": e.errno, "nproc": resource.getrlimit(resource.RLIMIT_NPROC)}))
"""


def test_fork_bomb_is_held_by_the_jobs_pids_limit(local: CagedServer) -> None:
    """fork() fails with EAGAIN once the job's cgroup holds JOB_MAX_PROCESSES processes; RLIMIT_NPROC
    (per uid, so per node user on SSH nodes) is no longer the limit; the server lives on."""
    body = run_job(local, FORK_BOMB)
    report = json.loads(body["stdout"])
    assert report["errno"] == 11, report
    assert MAX_PROCESSES - 8 <= report["forked"] < MAX_PROCESSES, report
    assert report["nproc"][0] != MAX_PROCESSES, report
    assert body["status"] == "completed", body
    assert_server_survived(local)


ML_JOB = """
import json, multiprocessing, os
from multiprocessing import shared_memory

def total(name):
    block = shared_memory.SharedMemory(name=name)
    try:
        return sum(block.buf[::4096])
    finally:
        block.close()

if __name__ == "__main__":
    block = shared_memory.SharedMemory(create=True, size=64 << 20)  # a DataLoader's batches in /dev/shm
    block.buf[::4096] = b"\\1" * len(block.buf[::4096])
    with multiprocessing.Pool(2) as pool:
        sums = pool.map(total, [block.name] * 4)
    block.close()
    block.unlink()
    shm = os.statvfs("/dev/shm")
    adj = int(open("/proc/self/oom_score_adj").read())
    with open(os.environ["GPULEDGER_RESULTS"], "w") as f:
        f.write(json.dumps({"sums": sums, "shm_bytes": shm.f_blocks * shm.f_frsize, "oom_score_adj": adj}) + "\\n")
    print("trained")
"""


def test_ordinary_ml_job_completes_within_its_limits(local: CagedServer) -> None:
    """Pool workers reading 64 MiB of shared memory in /dev/shm, and a results file: completed; its
    /dev/shm is sized at half the job's memory limit, and its processes are the OOM killer's first pick."""
    body = run_job(local, ML_JOB)
    assert (body["status"], body["stdout"]) == ("completed", "trained\n"), body
    with local.client(local.admin_token) as client:
        results = json.loads(client.get(f"/api/results/{body['job_id']}").json()["results"])
    assert results == {"sums": [(64 << 20) // 4096] * 4, "shm_bytes": JOB_MEMORY // 2, "oom_score_adj": 1000}


def test_a_job_asks_for_its_memory_up_to_the_nodes(local: CagedServer) -> None:
    """``memory: 128M`` is the job's limit (its /dev/shm is half of it); more than the node gives its
    jobs is a 400 naming the field and the node's memory."""
    body = run_job(local, FILL.format(path="/dev/shm/fill"), memory="128M")
    assert_out_of_memory(body, 128 << 20)
    assert int(body["stdout"].split()[2]) <= 64 << 20
    with local.client(local.admin_token) as client:
        status = client.get(f"/api/status/{body['job_id']}").json()
        assert status["finish_reason_text"] == "killed: out of memory (limit 128 MiB)"
        refused = submit(client, "print(1)\n", config_yaml("admin", memory="2G"))
    assert refused.status_code == 400
    assert "Invalid field memory" in refused.text
    assert f"({2 * JOB_MEMORY >> 20} MiB)" in refused.text


def test_the_jobs_cgroup_holds_its_limits_and_goes_with_it(local: CagedServer) -> None:
    """While a job runs, its own v1 cgroups (memory, pids, cpu) hold its processes and its limits: 256
    MiB without swap, JOB_MAX_PROCESSES, the CPU weight; once it has ended they are removed."""
    with local.client(local.admin_token) as client:
        job_id = submit(client, "import time\ntime.sleep(3)\n", config_yaml("admin")).json()["job_id"]
        wait_status(client, job_id, {"running"})
        dirs = {c: CGROUP_V1 / c / local.cage / "jobs" / f"job-{job_id}" for c in ("memory", "pids", "cpu")}
        assert all((d / "cgroup.procs").read_text().split() for d in dirs.values()), dirs
        assert (dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(JOB_MEMORY)
        assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text().strip() == str(JOB_MEMORY)
        assert (dirs["pids"] / "pids.max").read_text().strip() == str(MAX_PROCESSES)
        assert (dirs["cpu"] / "cpu.shares").read_text().strip() == "1024"
        assert wait_status(client, job_id, {"completed", "failed"})["status"] == "completed"
    deadline = time.monotonic() + 5  # the wrapper removes them just after it writes the job's status
    while any(d.exists() for d in dirs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [d for d in dirs.values() if d.exists()] == []


@pytest.mark.parametrize("mode", MODES)
def test_out_of_memory_through_an_ssh_node(tmp_path: Path, request: pytest.FixtureRequest, mode: str) -> None:
    """On an SSH node (loopback sshd) with ``memory = "256M"`` in its [[nodes]] table, the wrapper makes
    the job's cgroup there: 64 children of 32 MiB end failed/out_of_memory and the server, run as root
    or as an ordinary user, lives on."""
    cluster = request.getfixturevalue("ssh_cluster")
    user: ServerUser | None = request.getfixturevalue("server_user") if mode == "user" else None
    settings = ssh_settings(cluster)
    for name in ("code_scanner_enabled", "rate_limit_per_minute", "max_active_jobs_per_user", "endpoint_limits"):
        settings.pop(name)
    settings["nodes"] = [{**node, "memory": "256M"} for node in settings["nodes"]]
    with memory_cage() as cage, ExitStack() as stack:
        base = stack.enter_context(owned_dir(user)) if user else tmp_path
        if user is not None:  # the server user's own key and known_hosts
            for name in ("ssh_key_file", "ssh_known_hosts"):
                settings[name] = str(shutil.copy2(settings[name], base / Path(settings[name]).name))
                os.chown(settings[name], user.uid, user.gid)
        server = caged_server(base / "server", cage, user, **settings)
        try:
            body = run_job(server, CHILDREN)
            assert_out_of_memory(body)
            assert_server_survived(server)
        finally:
            server.stop()


def test_node_without_a_cgroup_is_down_naming_the_fix(tmp_path: Path) -> None:
    """Where the job's cgroup cannot be made (here: a parent below a file), the local node is down
    with a reason naming delegation and JOB_CGROUPS, and a job stays queued."""
    root = tmp_path / "server"
    root.mkdir()
    server = Server(
        root, code_scanner_enabled=False, endpoint_limits=OPEN_LIMITS, local_slots=1, job_cgroup_parent="memory.stat/x"
    )
    server.start()
    try:
        with server.client(server.admin_token) as client:
            node = client.get("/api/nodes").json()["nodes"][0]
            job_id = submit(client, "print(1)\n", config_yaml("admin")).json()["job_id"]
            status = client.get(f"/api/status/{job_id}").json()["status"]
        assert "cgroup" in (node["down_reason"] or ""), node
        assert "JOB_CGROUPS = false" in node["down_reason"]
        assert status == "pending"
    finally:
        server.stop()


def test_an_older_probe_wrapper_is_replaced(tmp_path: Path) -> None:
    """A wrapper left at the node's root by an older server (it refuses the probe's new cgroup argument
    with a usage error) is replaced at the probe: the node comes up and runs jobs."""
    root = tmp_path / "server"
    (root / "jobs" / "work").mkdir(parents=True)
    (root / "jobs" / "work" / "wrapper.py").write_text("import sys\nsys.stderr.write('usage: old')\nsys.exit(2)\n")
    server = Server(root, code_scanner_enabled=False, endpoint_limits=OPEN_LIMITS, local_slots=1)
    server.start()
    try:
        with server.client(server.admin_token) as client:
            assert client.get("/api/nodes").json()["nodes"][0]["down_reason"] is None
            assert submit(client, "print('ran')\n", config_yaml("admin"), wait=True).json()["stdout"] == "ran\n"
    finally:
        server.stop()


def test_cgroups_off_is_warned_at_every_start(tmp_path: Path) -> None:
    """JOB_CGROUPS = false runs jobs without limits of their own, and every start says so."""
    root = tmp_path / "server"
    root.mkdir()
    server = Server(root, code_scanner_enabled=False, endpoint_limits=OPEN_LIMITS, local_slots=1, job_cgroups=False)
    server.start()
    try:
        assert "cgroups.disabled" in (root / "serve-1.err").read_text()
    finally:
        server.stop()
