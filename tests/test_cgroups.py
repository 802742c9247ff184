"""The wrapper's cgroup files, v2 and v1, against fake cgroupfs trees (plain directories laid out as the
kernel lays them out), and the server's choice of a job's limits. The real v1 hierarchy is exercised
by tests/test_resources.py; cgroup v2 cannot run for real on these machines, so it is pinned here."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from executors import wrapper
from executors.outcome import finished_event
from executors.protocol import ExitStatus
from executors.resources import job_resources
from executors.transport import LocalTransport
from ledger.domain.attempts import PLATFORM_REASONS
from ledger.domain.events import Blob
from ledger.domain.jobs import JobState
from ledger.store.settings import SandboxSettings

V2_FILES = ("cgroup.procs", "memory.max", "memory.swap.max", "memory.events", "pids.max", "cpu.weight", "cpu.max")
V1_FILES = {
    "memory": ("cgroup.procs", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control"),
    "pids": ("cgroup.procs", "pids.max"),
    "cpu": ("cgroup.procs", "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"),
}


def fake_v2(root: Path, job: str, *, enabled: str = "memory pids cpu") -> Path:
    """A unified hierarchy whose job directory the kernel has populated (create() finds it made)."""
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text(enabled + "\n")
    (root / "gpuledger").mkdir()
    (root / "gpuledger" / "cgroup.subtree_control").write_text("\n")
    for name in V2_FILES:
        (root / "gpuledger" / job).mkdir(exist_ok=True)
        (root / "gpuledger" / job / name).write_text("")
    return root / "gpuledger" / job


def fake_v1(root: Path, job: str, *, memsw: bool = True) -> dict[str, Path]:
    dirs = {}
    for controller, names in V1_FILES.items():
        dirs[controller] = root / controller / "gpuledger" / job
        dirs[controller].mkdir(parents=True)
        for name in names:
            if memsw or name != "memory.memsw.limit_in_bytes":
                (dirs[controller] / name).write_text("")
    return dirs


def test_v2_writes_memory_swap_pids_and_cpu_in_one_directory(tmp_path: Path) -> None:
    """v2: memory.max, memory.swap.max 0, pids.max, cpu.weight and cpu.max, and one cgroup.procs to join."""
    job = fake_v2(tmp_path, "job-a")
    cgroup = wrapper.JobCgroup("gpuledger", "job-a", fs=str(tmp_path))
    cgroup.create(256 << 20, 64, 50, 1.5)
    written = {name: (job / name).read_text() for name in V2_FILES if (job / name).read_text()}
    assert written == {
        "memory.max": f"{256 << 20}\n",
        "memory.swap.max": "0\n",
        "pids.max": "64\n",
        "cpu.weight": "50\n",
        "cpu.max": "150000 100000\n",
    }
    assert cgroup.version == "v2"
    assert cgroup.procs_files() == [str(job / "cgroup.procs")]


def test_v2_enables_missing_controllers_in_every_ancestor(tmp_path: Path) -> None:
    """A controller's files exist in a v2 cgroup only when each ancestor delegates it: the parent's
    subtree_control gets +memory +pids +cpu, the root only what it lacks."""
    fake_v2(tmp_path, "job-a", enabled="memory")
    wrapper.JobCgroup("gpuledger", "job-a", fs=str(tmp_path)).create(1 << 30, 0, 100, 0)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+pids +cpu"
    assert (tmp_path / "gpuledger" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_v2_oom_kill_counter_is_read_from_memory_events(tmp_path: Path) -> None:
    """oom_kill in memory.events decides out_of_memory (not the exit status)."""
    job = fake_v2(tmp_path, "job-a")
    cgroup = wrapper.JobCgroup("gpuledger", "job-a", fs=str(tmp_path))
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\noom_group_kill 0\n")
    assert cgroup.oom_kills() == 2
    (job / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 0\noom_kill 0\n")
    assert cgroup.oom_kills() == 0


def test_v2_missing_controller_names_the_fix(tmp_path: Path) -> None:
    """Without pids.max (controller not delegated) creation fails with a message naming delegation."""
    job = fake_v2(tmp_path, "job-a")
    (job / "pids.max").unlink()
    cgroup = wrapper.JobCgroup("gpuledger", "job-a", fs=str(tmp_path))
    with pytest.raises(wrapper.CgroupUnavailable, match=r"pids controller is not available.*delegated"):
        cgroup.create(1 << 30, 64, 100, 0)


def test_v1_writes_each_controller_hierarchy(tmp_path: Path) -> None:
    """v1: memory.limit_in_bytes and memsw (no swap), pids.max, cpu.shares and the CFS quota, each in its
    own hierarchy, and one cgroup.procs per hierarchy to join."""
    dirs = fake_v1(tmp_path, "job-b")
    cgroup = wrapper.JobCgroup("gpuledger", "job-b", fs=str(tmp_path))
    cgroup.create(128 << 20, 32, 100, 2)
    assert cgroup.version == "v1"
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == f"{128 << 20}\n"
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == f"{128 << 20}\n"
    assert (dirs["pids"] / "pids.max").read_text() == "32\n"
    assert (dirs["cpu"] / "cpu.shares").read_text() == "1024\n"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "200000\n"
    assert cgroup.procs_files() == [str(dirs[c] / "cgroup.procs") for c in ("memory", "pids", "cpu")]


def test_v1_without_swap_accounting_still_limits_memory(tmp_path: Path) -> None:
    """No memory.memsw.* (swapaccount off): the memory limit is set, the swap limit skipped."""
    dirs = fake_v1(tmp_path, "job-b", memsw=False)
    wrapper.JobCgroup("gpuledger", "job-b", fs=str(tmp_path)).create(128 << 20, 0, 100, 0)
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == f"{128 << 20}\n"
    assert not (dirs["memory"] / "memory.memsw.limit_in_bytes").exists()
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == ""  # no quota asked: none written


def test_v1_oom_kill_counter_is_read_from_oom_control(tmp_path: Path) -> None:
    """oom_kill in memory.oom_control is the v1 counter."""
    dirs = fake_v1(tmp_path, "job-b")
    (dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert wrapper.JobCgroup("gpuledger", "job-b", fs=str(tmp_path)).oom_kills() == 3


def test_remove_takes_away_what_create_made(tmp_path: Path) -> None:
    """remove() rmdirs the job's directories (empty ones, as cgroupfs has them once the job is gone)."""
    root = tmp_path
    for controller in ("memory", "pids", "cpu"):
        (root / controller).mkdir()
    (root / "memory" / "gpuledger").mkdir()
    cgroup = wrapper.JobCgroup("gpuledger", "job-c", fs=str(root))
    with pytest.raises(wrapper.CgroupUnavailable):  # plain directories hold no interface files
        cgroup.create(1 << 20, 1, 100, 0)
    assert not (root / "memory" / "gpuledger" / "job-c").exists()  # undone on failure
    for controller in ("memory", "pids", "cpu"):
        (root / controller / "gpuledger" / "job-c").mkdir(parents=True)
    cgroup.made = [str(root / c / "gpuledger" / "job-c") for c in ("memory", "pids", "cpu")]
    cgroup.remove()
    assert [p.name for p in root.glob("*/gpuledger/*")] == []


def wait_for_text(file: Path, text: str) -> bool:
    """True once ``file`` holds ``text`` (within a second)."""
    deadline = time.monotonic() + 1.0
    while file.read_text() != text and time.monotonic() < deadline:
        time.sleep(0.001)
    return file.read_text() == text


def test_the_migration_path_is_kept_warm_until_the_job_joins(tmp_path: Path) -> None:
    """The warmer moves this process into its own cgroup again and again while the job's cgroup is
    empty (or not yet known), and stops once a process has joined it."""
    own, joined = tmp_path / "own.procs", tmp_path / "joined.procs"
    own.write_text("")
    joined.write_text("")
    warmer = wrapper.MigrationWarmer(str(own)).start()
    assert wait_for_text(own, str(os.getpid()))
    own.write_text("")
    assert wait_for_text(own, str(os.getpid()))  # again, with no job's cgroup known yet
    warmer.joined = str(joined)
    joined.write_text("4242\n")
    time.sleep(0.05)
    own.write_text("")
    time.sleep(0.05)
    assert own.read_text() == ""


def test_the_wrapper_warms_from_its_first_moment_only_for_a_new_job_in_a_cgroup(tmp_path: Path) -> None:
    """`run` or `launch` of a job not yet launched whose job.json asks for a cgroup starts the warmer
    before the wrapper's slow imports; any other command, a job launched already, or one without a
    cgroup starts none. The launcher stops it once the job has started."""
    fs = tmp_path / "fs"
    fs.mkdir()
    fake_v2(fs, "job-e")
    unified = next(line for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    own = fs / unified.split(":", 2)[2].lstrip("/") / "cgroup.procs"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text("")
    workdir = tmp_path / "job-e"
    workdir.mkdir()
    (workdir / "job.json").write_bytes(
        msgspec.json.encode({"command": "echo '\"cgroups\":true'", "resources": {"cgroups": False}})
    )
    assert wrapper.early_warmer(["wrapper.py", "run", str(workdir), "0", "0"], str(fs)) is None
    (workdir / "job.json").write_bytes(msgspec.json.encode({"command": "true", "resources": {"cgroups": True}}))
    for argv in (["wrapper.py", "status", str(workdir)], ["wrapper.py", "run"]):
        assert wrapper.early_warmer(argv, str(fs)) is None
    warmer = wrapper.early_warmer(["wrapper.py", "launch", str(workdir)], str(fs))
    assert warmer is not None
    assert wait_for_text(own, str(os.getpid()))
    warmer.stopped = True
    (workdir / "launched").write_text("")
    assert wrapper.early_warmer(["wrapper.py", "run", str(workdir), "0", "0"], str(fs)) is None


def test_the_warming_move_is_a_no_op_into_this_process_cgroup(tmp_path: Path) -> None:
    """v1: the memory hierarchy's cgroup this process is in; v2: the unified one (the 0:: line)."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    memory = next(line.split(":", 2) for line in lines if "memory" in line.split(":", 2)[1].split(","))
    v1 = wrapper.JobCgroup("gpuledger", "job-w", fs=str(tmp_path / "v1"))
    assert v1.own_procs_file() == str(tmp_path / "v1" / memory[1] / memory[2].lstrip("/") / "cgroup.procs")
    (tmp_path / "v2").mkdir()
    fake_v2(tmp_path / "v2", "job-w")
    unified = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    v2 = wrapper.JobCgroup("gpuledger", "job-w", fs=str(tmp_path / "v2"))
    assert v2.own_procs_file() == str(tmp_path / "v2" / unified.lstrip("/") / "cgroup.procs")


@pytest.fixture
def real_v1_job(tmp_path: Path) -> Iterator[tuple[Path, str, list[Path]]]:
    """A job directory whose job.json asks for a cgroup below a fresh parent on the real v1 hierarchy:
    (workdir, parent, the job's cgroup directories); whatever is left of them is removed afterwards."""
    top = Path(wrapper.CGROUP_FS)
    if not (top / "memory" / "memory.limit_in_bytes").exists() or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    parent = f"gpuledger-test-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path / "job-x"
    workdir.mkdir()
    (workdir / "job.json").write_text(
        json.dumps({"command": "true", "resources": {"cgroups": True, "cgroup_parent": parent}})
    )
    made = [top / controller / parent / "job-job-x" for controller in wrapper.CGROUP_CONTROLLERS]
    try:
        yield workdir, parent, made
    finally:
        for d in [*made, *(d.parent for d in made)]:
            if d.exists():
                d.rmdir()


def test_the_launcher_makes_the_cgroup_ahead_and_a_cancel_before_start_removes_it(
    real_v1_job: tuple[Path, str, list[Path]],
) -> None:
    """Real v1: the launcher makes the job's cgroup before the daemon starts (so the kernel's grace
    period passes during the daemon's set-up); a job cancelled before it started leaves none behind."""
    workdir, _, made = real_v1_job
    assert wrapper.prepare_cgroup(str(workdir)) is not None
    assert all(d.is_dir() for d in made)
    (workdir / "cancel").write_text("")
    wrapper.run_daemon(str(workdir))
    assert json.loads((workdir / "status.json").read_text())["cancelled"] is True
    assert not any(d.exists() for d in made)


@pytest.mark.parametrize("clean", ["wrapper.py clean", "local runner"])
def test_clean_removes_the_cgroup_a_dead_daemon_left(real_v1_job: tuple[Path, str, list[Path]], clean: str) -> None:
    """Real v1: a job whose daemon died mid-run left its (now empty) cgroup; removing its directory
    (``wrapper.py clean`` on a node, the local runner's in-process removal, both also the start-up
    sweep's) removes the cgroup with it, so leftovers never pile up under the parent."""
    workdir, parent, made = real_v1_job
    wrapper.named_cgroup({"cgroup_parent": parent}, str(workdir)).make_dirs()
    assert all(d.is_dir() for d in made)
    if clean == "local runner":
        asyncio.run(LocalTransport("n").remove_tree(str(workdir)))
    else:
        assert wrapper.cmd_clean(str(workdir)) == 0
    assert not workdir.exists()
    assert not any(d.exists() for d in made)


def test_parent_may_not_climb_out() -> None:
    """A parent with .. is refused before anything is made."""
    with pytest.raises(wrapper.CgroupUnavailable, match=r"\.\."):
        wrapper.JobCgroup("gpuledger/../../etc", "job-d")


def test_memory_limit_and_tmpfs_size() -> None:
    """The server's bytes win; otherwise the share of MemTotal; /tmp and /dev/shm get the tmpfs share."""
    assert wrapper.memory_limit({"memory_bytes": 256 << 20, "memory_share": 0.4}) == 256 << 20
    total = wrapper.mem_total()
    assert total
    assert wrapper.memory_limit({"memory_share": 0.4}) == int(total * 0.4)
    assert wrapper.memory_limit({}) == 0
    assert wrapper.tmpfs_size({"tmpfs_share": 0.5}, 256 << 20) == 128 << 20
    assert wrapper.tmpfs_size({"tmpfs_share": 0.5}, 0) == 0


BLOB = Blob(digest="0" * 64, size=0)


def a_job(**fields: object) -> JobState:
    base: dict[str, object] = {
        "job_id": "j",
        "user_id": "u",
        "competition_id": "c",
        "project_id": "p",
        "expected_time_s": 1,
        "code": {"digest": "0" * 64, "size": 0},
        "position": 1,
        "created_at": 0,
    }

    return msgspec.convert({**base, **fields}, JobState)


def test_server_gives_a_job_its_slots_part_of_the_node() -> None:
    """Two of four slots on a node of 64 GiB: 32 GiB; an ask is kept up to the node's memory; an
    unknown node's memory becomes a share for the wrapper; pids and CPU follow the settings."""
    settings = SandboxSettings(max_processes=512, cpu_quota=2.0, memory_share=0.8)
    two = a_job(gpus=2)
    assert job_resources(settings, two, node_slots=4, node_memory=64 << 30).memory_bytes == 32 << 30
    asked = a_job(memory=100 << 30)
    assert job_resources(settings, asked, node_slots=4, node_memory=64 << 30).memory_bytes == 64 << 30
    unknown = job_resources(settings, two, node_slots=4, node_memory=None)
    assert (unknown.memory_bytes, unknown.memory_share) == (0, 0.4)
    assert (unknown.max_pids, unknown.cpu_quota, unknown.cgroups) == (512, 4.0, True)


def test_an_oom_kill_is_out_of_memory_whatever_the_exit_code_and_is_charged() -> None:
    """The wrapper's out_of_memory (from the cgroup's counter) ends the job failed/out_of_memory with
    the limit in the message, even after exit 0; it is not a platform reason, so it is charged."""
    started = datetime(2026, 1, 1, tzinfo=UTC)
    for exit_code, sig in ((0, None), (None, 9), (1, None)):
        status = ExitStatus(
            exit_code=exit_code,
            signal=sig,
            started_at=started,
            ended_at=started,
            out_of_memory=True,
            memory_limit_bytes=256 << 20,
        )
        event = finished_event(a_job(), status, stdout=BLOB, stderr=BLOB, results=None, results_file=None)
        assert (event.status, event.reason) == ("failed", "out_of_memory")
        assert event.message is not None
        assert "memory limit of 256 MiB" in event.message
    assert "out_of_memory" not in PLATFORM_REASONS
