"""The sandbox's kernel surface, as a hostile job sees it, on the local runner and on SSH nodes: the
seccomp filter (keyrings, io_uring, nested user namespaces), nothing secret in /etc, the start-up
refusal when a secret would be in view, and each job seeing exactly its own (fake) GPU devices."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from nonroot import MODES, ServerUser, delegated_cgroup, owned_dir
from server import Server, config_yaml, submit
from test_sandbox import Harness, start_server
from test_ssh_jobs import ssh_settings
from wrapper_jobs import PY, prepare_workdir

from executors.protocol import FrameDecoder, FrameKind, SandboxSpec, decode_exit_status, job_spec_bytes

USER_UID = 61500  # an ordinary user, no account needed

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("require_sandbox")]

# Stands in for the admin guide's /etc/gpuledger/id_ed25519, world-readable so only the bind decides.
FAKE_KEY_DIR = Path(f"/etc/gpuledger-surface-test-{uuid.uuid4().hex[:8]}")
# index -> minor, deliberately not the identity (as on machines where nvidia-smi's order differs)
MINORS = {0: 2, 1: 3, 2: 0, 3: 1}

PROBE = """
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
NR = {{"x86_64": {{"add_key": 248, "keyctl": 250, "io_uring_setup": 425}},
       "aarch64": {{"add_key": 217, "keyctl": 219, "io_uring_setup": 425}}}}[os.uname().machine]
KEY_SPEC_USER_KEYRING, KEYCTL_SEARCH = -4, 10

def call(name, *args):
    result = libc.syscall(NR[name], *args)
    return "returned %d" % result if result != -1 else os.strerror(ctypes.get_errno())

def read(path):
    try:
        return "read %d bytes" % len(open(path, "rb").read())
    except OSError as e:
        return type(e).__name__

report = {{
    "seccomp": [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0],
    "keyctl_search": call("keyctl", KEYCTL_SEARCH, ctypes.c_long(KEY_SPEC_USER_KEYRING), b"user",
                          b"gpuledger-surface", 0),
    "add_key": call("add_key", b"user", b"gpuledger-surface", b"alice's secret", ctypes.c_size_t(14),
                    ctypes.c_long(KEY_SPEC_USER_KEYRING)),
    "io_uring_setup": call("io_uring_setup", 8, ctypes.create_string_buffer(128)),
    "unshare": subprocess.run(["unshare", "-Ur", "true"], capture_output=True).returncode,
    "fake_key": read({key!r}),
    "shadow": read("/etc/shadow"),
    "devices": sorted(n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()),
    "slots": os.environ.get("GPULEDGER_SLOTS", ""),
}}
print(json.dumps(report))
"""


def fake_devices(directory: Path, count: int) -> Path:
    """/dev/nvidia0..N-1 and nvidiactl as real character devices (major 195, as the driver's)."""
    directory.mkdir(parents=True, exist_ok=True)
    for minor in range(count):
        os.mknod(directory / f"nvidia{minor}", 0o666 | stat.S_IFCHR, os.makedev(195, minor))
    os.mknod(directory / "nvidiactl", 0o666 | stat.S_IFCHR, os.makedev(195, 255))
    return directory


def fake_nvidia_smi(directory: Path) -> Path:
    """An nvidia-smi that lists 4 GPUs whose device minors are not their indices."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "nvidia-smi"
    lines = "\n".join(f"{i}, {m}" for i, m in MINORS.items())
    listing = "\n".join(f"GPU {i}: Fake GPU (UUID: GPU-0000000{i}-0000-0000-0000-000000000000)" for i in MINORS)
    script.write_text(
        f'#!/bin/sh\ncase "$*" in *minor_number*) printf "%s\\n" "{lines}";; *) printf "%s\\n" "{listing}";; esac\n'
    )
    script.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def fake_key() -> Iterator[Path]:
    FAKE_KEY_DIR.mkdir(mode=0o755)
    key = FAKE_KEY_DIR / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY----- (a stand-in)\n")
    key.chmod(0o644)
    try:
        yield key
    finally:
        shutil.rmtree(FAKE_KEY_DIR)


@pytest.fixture(
    scope="module", params=[("local", "root"), ("ssh", "root"), ("local", "user"), ("ssh", "user")], ids="-".join
)
def surface(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_key: Path
) -> Iterator[Harness]:
    """The attack table's server: run as root, or as an ordinary user (tests/nonroot.py) on files it
    owns, its jobs' cgroups in a subtree delegated to it."""
    runner, mode = request.param
    user: ServerUser | None = request.getfixturevalue("server_user") if mode == "user" else None
    with ExitStack() as stack:
        base = stack.enter_context(owned_dir(user)) if user else tmp_path_factory.mktemp(f"surface-{runner}")
        settings: dict[str, Any] = {"job_gpu_device_dir": str(fake_devices(base / "dev", 4))}
        if user is not None:
            parent = f"gpuledger-surface-{uuid.uuid4().hex[:8]}"
            settings["job_cgroup_parent"] = stack.enter_context(delegated_cgroup(user, parent))
        server, roots = surface_server(request, runner, base, settings, user)
        stack.callback(server.stop)
        yield Harness(runner, server, roots)


def surface_server(
    request: pytest.FixtureRequest, runner: str, base: Path, settings: dict[str, Any], user: ServerUser | None
) -> tuple[Server, list[Path]]:
    root = base / "server"
    if runner == "local":
        os.environ["PATH"], saved = f"{fake_nvidia_smi(base / 'bin')}:{os.environ['PATH']}", os.environ["PATH"]
        try:
            return start_server(root, user, **settings), [root / "jobs" / "work" / "jobs"]
        finally:
            os.environ["PATH"] = saved
    cluster = request.getfixturevalue("ssh_cluster")
    ssh = ssh_settings(cluster, job_command=f"{PY} {{solution}}", job_readonly_paths=[sys.prefix, sys.base_prefix])
    for name in ("code_scanner_enabled", "rate_limit_per_minute", "max_active_jobs_per_user", "endpoint_limits"):
        ssh.pop(name)
    if user is not None:  # the admin guide's layout: the key and known_hosts are the server user's, 0600
        for name in ("ssh_key_file", "ssh_known_hosts"):
            ssh[name] = str(shutil.copy2(ssh[name], base / Path(ssh[name]).name))
            os.chown(ssh[name], user.uid, user.gid)
    server = start_server(root, user, **ssh, **settings)
    return server, [Path(cluster.settings().runner.remote_root) / "jobs"]


def probe(harness: Harness, key: Path) -> dict[str, Any]:
    with harness.client() as client:
        body = submit(client, PROBE.format(key=str(key)), config_yaml("admin"), wait=True).json()
    assert body["status"] == "completed", json.dumps(body)
    report: dict[str, Any] = json.loads(body["stdout"].strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def reports(surface: Harness, fake_key: Path) -> list[dict[str, Any]]:
    """Two jobs one after the other (same slot, same uid): alice's, then bob's."""
    return [probe(surface, fake_key), probe(surface, fake_key)]


def test_the_server_runs_as_the_mode_says(surface: Harness, request: pytest.FixtureRequest) -> None:
    """In user mode the server's process and its ledger belong to the ordinary user, never root."""
    assert surface.server.proc is not None
    uid = int(Path(f"/proc/{surface.server.proc.pid}/status").read_text().split("Uid:")[1].split()[0])
    ledger = (surface.server.root / "gpuledger.db").stat().st_uid
    expected = request.getfixturevalue("server_user").uid if "user" in request.node.callspec.id else 0
    assert (uid, ledger) == (expected, expected)


def test_the_filter_is_on(reports: list[dict[str, Any]]) -> None:
    """/proc/self/status says Seccomp: 2 (a filter) inside every job."""
    assert [r["seccomp"] for r in reports] == ["2", "2"]


def test_keyring_is_out_of_reach(reports: list[dict[str, Any]]) -> None:
    """alice's add_key and bob's keyctl search of the slot uid's keyring both get EPERM."""
    denied = os.strerror(1)
    assert (reports[0]["add_key"], reports[1]["keyctl_search"]) == (denied, denied)


def test_io_uring_is_denied(reports: list[dict[str, Any]]) -> None:
    """io_uring_setup gets EPERM."""
    assert reports[0]["io_uring_setup"] == os.strerror(1)


def test_no_nested_user_namespace(reports: list[dict[str, Any]]) -> None:
    """`unshare -Ur true` fails inside a job."""
    assert reports[0]["unshare"] != 0


def test_secrets_under_etc_are_not_bound(reports: list[dict[str, Any]]) -> None:
    """A world-readable stand-in for the SSH key under /etc is absent in the sandbox, as is /etc/shadow."""
    assert (reports[0]["fake_key"], reports[0]["shadow"]) == ("FileNotFoundError", "FileNotFoundError")


def test_a_job_sees_only_its_own_gpu(surface: Harness, reports: list[dict[str, Any]]) -> None:
    """Of 4 fake /dev/nvidiaN, a one-GPU job sees exactly its own: on the local runner the minor that
    nvidia-smi gives for its slot's index; on an SSH node (no nvidia-smi there) its slot's number."""
    for report in reports:
        slots = [int(s) for s in report["slots"].split(",")]
        mapped = [MINORS[s] for s in slots] if surface.runner == "local" else slots
        assert report["devices"] == [f"nvidia{m}" for m in sorted(mapped)]


@pytest.mark.parametrize("mode", MODES)
def test_refuses_to_start_with_the_ssh_key_in_view(tmp_path: Path, mode: str, request: pytest.FixtureRequest) -> None:
    """SSH_KEY_FILE inside a JOB_READONLY_PATHS directory: serve, as root or as an ordinary user,
    exits 2 with one line naming the fix."""
    user: ServerUser | None = request.getfixturevalue("server_user") if mode == "user" else None
    with ExitStack() as stack:
        base = stack.enter_context(owned_dir(user)) if user else tmp_path
        shared = base / "shared"
        shared.mkdir()
        (shared / "id_ed25519").write_text("key\n")
        (base / "server").mkdir()
        if user is not None:
            user.own(base)
        server = Server(base / "server", ssh_key_file=str(shared / "id_ed25519"), job_readonly_paths=[str(shared)])
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **server.env}
        argv = [sys.executable, "-m", "cli.main", "serve"]
        done = subprocess.run(
            argv,
            cwd=server.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=user and user.become(),
        )
    assert done.returncode == 2, done.stderr
    assert "refusing to start: SSH_KEY_FILE" in done.stderr
    assert "JOB_READONLY_PATHS" in done.stderr


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A directory the ordinary user can reach (pytest's own tmp is root's, 0700)."""
    base = Path(tempfile.mkdtemp(prefix="gpuledger-surface-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="needs root and python3")
def test_an_ordinary_users_wrapper_gets_the_same_surface(user_dir: Path) -> None:
    """Run as an ordinary user (a non-root server, an SSH node's GPU_USER): Seccomp 2, no nested user
    namespace (bwrap's --disable-userns on top of the filter), add_key and io_uring_setup get EPERM."""
    base = user_dir
    workdir = base / "job"
    command = f"/usr/bin/python3 -c {shlex.quote(PROBE.format(key=str(FAKE_KEY_DIR / 'id_ed25519')))}"
    prepare_workdir(workdir, b"", job_spec_bytes(command, 30.0, 0.5, {}, SandboxSpec()))
    for path in [base, workdir, *workdir.rglob("*")]:
        os.chown(path, USER_UID, USER_UID)
    as_user = ["setpriv", "--reuid", str(USER_UID), "--regid", str(USER_UID), "--clear-groups", "--"]
    wrapper = [*as_user, "/usr/bin/python3", "-I", "-S", str(workdir / "wrapper.py")]
    subprocess.run([*wrapper, "launch", str(workdir)], check=True, capture_output=True, timeout=30)
    done = subprocess.run([*wrapper, "follow", str(workdir), "0", "0"], capture_output=True, timeout=60)
    frames = FrameDecoder().feed(done.stdout)
    stdout = b"".join(f.payload for f in frames if f.kind is FrameKind.STDOUT).decode()
    assert decode_exit_status(frames[-1].payload).exit_code == 0, stdout
    report = json.loads(stdout.strip().splitlines()[-1])
    denied = os.strerror(1)
    assert (report["seccomp"], report["add_key"], report["io_uring_setup"]) == ("2", denied, denied)
    assert report["unshare"] != 0
    assert report["devices"] == []  # no GPU list, no GPU device


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, []),
        ({"gpus": []}, []),
        ({"gpus": [0]}, ["nvidia0"]),
        ({"gpu_indices": [1]}, ["nvidia3"]),
        ({"gpus_from_slurm": True}, ["nvidia2"]),
    ],
)
def test_the_wrapper_binds_exactly_the_gpus_it_is_given(
    tmp_path: Path, given: dict[str, Any], expected: list[str]
) -> None:
    """No GPU list: no /dev/nvidiaN (never all of them); minors as given; nvidia-smi indices mapped to
    minors by the node's nvidia-smi (index 1 is minor 3 here); Slurm's SLURM_JOB_GPUS as minors."""
    devices = fake_devices(tmp_path / "dev", 4)
    spec = SandboxSpec(readonly_paths=[sys.prefix, sys.base_prefix], gpu_device_dir=str(devices), **given)
    command = "ls /dev | grep -E '^nvidia[0-9]+$' | tr '\\n' ' '"
    workdir = tmp_path / "job"
    prepare_workdir(workdir, b"", job_spec_bytes(command, 30.0, 0.5, {}, spec))
    env = {"PATH": f"{fake_nvidia_smi(tmp_path / 'bin')}:/usr/bin:/bin", "SLURM_JOB_GPUS": "2"}
    wrapper = [PY, "-I", "-S", str(workdir / "wrapper.py")]
    subprocess.run([*wrapper, "launch", str(workdir)], check=True, capture_output=True, timeout=30, env=env)
    done = subprocess.run([*wrapper, "follow", str(workdir), "0", "0"], capture_output=True, timeout=60)
    frames = FrameDecoder().feed(done.stdout)
    assert decode_exit_status(frames[-1].payload).exit_code in (0, 1)  # grep exits 1 when it finds nothing
    stdout = b"".join(f.payload for f in frames if f.kind is FrameKind.STDOUT).decode()
    assert stdout.split() == expected


def job_uid_outside(argv_text: str, timeout: float = 10.0) -> int | None:
    """The uid, as the host sees it (`ps -o uid`), of the process whose command line is ``argv_text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(["ps", "-eo", "uid=,args="], capture_output=True, text=True, check=True).stdout
        for line in listing.splitlines():
            uid, _, args = line.strip().partition(" ")
            if args.strip() == argv_text:
                return int(uid)
        time.sleep(0.05)
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="root mode: the wrapper runs as root")
def test_root_mode_job_is_in_its_own_user_namespace_as_the_slot_uid(tmp_path: Path) -> None:
    """Run as root, the job is in a user namespace mapping only the slot uid to itself (so bwrap's
    --disable-userns applies), `unshare -U` fails, and outside the job's process is the slot uid."""
    slot_uid, nap = 61234, f"sleep 3.{uuid.uuid4().int % 10**6:06d}"
    command = f"cat /proc/self/uid_map; unshare -U true; echo unshare=$?; {nap}"
    workdir = tmp_path / "job"
    spec = SandboxSpec(uid=slot_uid)
    prepare_workdir(workdir, b"", job_spec_bytes(command, 30.0, 0.5, {}, spec))
    wrapper = [PY, "-I", "-S", str(workdir / "wrapper.py")]
    subprocess.run([*wrapper, "launch", str(workdir)], check=True, capture_output=True, timeout=30)
    assert job_uid_outside(nap) == slot_uid
    done = subprocess.run([*wrapper, "follow", str(workdir), "0", "0"], capture_output=True, timeout=60)
    frames = FrameDecoder().feed(done.stdout)
    stdout = b"".join(f.payload for f in frames if f.kind is FrameKind.STDOUT).decode()
    assert decode_exit_status(frames[-1].payload).exit_code == 0, stdout
    assert stdout.split()[:3] == [str(slot_uid), str(slot_uid), "1"]
    assert "unshare=0" not in stdout
