#!/usr/bin/env python3
"""gpuledger job wrapper: runs one job in a sandbox, detached from whoever started it.

It is uploaded into the job's control directory and run as `python3 -I -S wrapper.py SUBCOMMAND
CONTROL_DIR ...`, on this host or over SSH, so it is one stdlib-only file that still runs on Python 3.8.
The control directory is the interface; the job never sees it (only `work/` is bound into the sandbox):

    job.json      written by the runner: command, time_limit_s, grace_s, env, sandbox
    seccomp.bpf   written by the runner: the job's system-call filter, a BPF program bwrap loads
    work/         the job's own workdir: solution.py, its results file, whatever it writes
    launched      claim marker (O_EXCL): whoever creates it decides whether the job ever runs
    started.json  pid, pgid, wrapper_pid, wrapper_start_ticks, started_at, sandbox_pid  (atomic)
    stdout        the job's standard output, appended (the job gets the open file, not the path)
    stderr        the job's standard error, appended (only the job's: the wrapper's notices go to status.json)
    cancel        created by `cancel`; the daemon polls for it
    status.json   exit_code, signal, timed_out, cancelled, started_at, ended_at,
                  group_gone, error, disk_limit, output_limit, notice               (atomic)
    wrapper.log   the daemon's traceback, if it ever crashes

The sandbox is bubblewrap (`bwrap`): own PID, IPC, UTS and (by default) network namespaces, the system
read-only (of /etc an allowlist), a private /tmp, only the job's workdir writable, a seccomp filter.
Run as root, the job runs as the slot's unprivileged uid (dropped by setpriv inside the sandbox, where
a second bwrap makes a user namespace owned by that uid); run as an ordinary user, bwrap makes the user
namespace itself, unless the user has subordinate ids (/etc/subuid, /etc/subgid, newuidmap): then the
daemon is root of a user namespace of its own first and goes the root way there, so the slot's uid is a
subordinate one ("own ids"). Either way no further user namespace may be made (bwrap's --disable-userns).
The exit status is the one this daemon gets from waitpid on bwrap, never a file.

Exit status: a job killed by signal N records signal=N and exit_code=null; any other end records its
exit code and signal=null. In the sandbox a death by signal N reaches us as exit 128+N (bwrap reports
it so), and is recorded as signal N.

`follow` writes frames [kind: 1 byte][length: 4 bytes big-endian][payload] with the kinds below.
"""

from __future__ import annotations  # annotations stay text: the 3.8 interpreter never evaluates them

import os
import sys
import time

# --- the job's cgroup: its migration path warmed from the wrapper's first moment -------------------
# Here, above the slower imports (json, subprocess, datetime: ~12 ms), so that much more of the kernel's
# grace period passes before the job's first process moves into its cgroup.

CGROUP_FS = "/sys/fs/cgroup"
WARM_EVERY_S = 0.005  # half a grace period here: the path never cools between moves
WARM_FOR_S = 2.0  # a job that has not joined by then is slow for other reasons


class MigrationWarmer:
    """Keeps the kernel's cgroup migration path warm until the job's first process has joined its cgroup.

    Moving a process into a cgroup takes a global lock (cgroup_threadgroup_rwsem) whose first taker
    waits out an RCU grace period: ~10 ms here, most of the cgroup's start-up cost. A move within a
    grace period of the last one is nearly free. So a thread moves this process into the cgroup it is
    already in (a no-op move) every few ms, and the job's own move finds the path warm. Best effort: it
    stops at the first error, once a process is in ``joined`` (the job's cgroup.procs, set when known),
    when ``stopped`` is set, or after ``WARM_FOR_S``."""

    def __init__(self, own_procs: str) -> None:
        self.own_procs = own_procs
        self.joined: str | None = None
        self.stopped = False

    def start(self) -> MigrationWarmer:
        import _thread  # not threading: its imports would cost the time this thread is here to win

        _thread.start_new_thread(self.run, ())
        return self

    def run(self) -> None:
        pid = str(os.getpid()).encode("ascii")
        deadline = time.monotonic() + WARM_FOR_S
        try:
            while not self.stopped and time.monotonic() < deadline:
                fd = os.open(self.own_procs, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
                if self.joined is not None and self.job_joined(self.joined):
                    return
                time.sleep(WARM_EVERY_S)
        except OSError:  # not ours to write (a delegated subtree), or the cgroup is gone: no warming
            return

    @staticmethod
    def job_joined(procs: str) -> bool:
        with open(procs) as f:
            return bool(f.read().strip())


def own_procs_file(fs: str) -> str | None:
    """The cgroup.procs of the cgroup this process is in now (v2, or v1's memory hierarchy)."""
    v2 = os.path.exists(os.path.join(fs, "cgroup.controllers"))
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, where = [*line.split(":", 2), "", ""][:3]
        if (v2 and number == "0") or (not v2 and "memory" in controllers.split(",")):
            top = fs if v2 else os.path.join(fs, controllers)
            return os.path.join(top, where.lstrip("/"), "cgroup.procs")
    return None


def early_warmer(argv: list[str], fs: str = CGROUP_FS) -> MigrationWarmer | None:
    """A started warmer for `run` or `launch` of a job nobody has launched yet whose job.json asks for
    a cgroup; None otherwise. job.json is searched as bytes (json is not imported yet): the runner's
    encoder writes the key as "cgroups":true, and inside a JSON string those quotes would be escaped."""
    if len(argv) < 3 or argv[1] not in ("run", "launch") or os.path.exists(os.path.join(argv[2], "launched")):
        return None
    try:
        with open(os.path.join(argv[2], "job.json"), "rb") as f:
            spec = f.read()
    except (OSError, ValueError):  # no job.json (yet), or a path main() will refuse
        return None
    if b'"cgroups":true' not in spec and b'"cgroups": true' not in spec:
        return None
    own = own_procs_file(fs)
    return None if own is None else MigrationWarmer(own).start()


EARLY_WARMER = early_warmer(sys.argv) if __name__ == "__main__" else None

import contextlib  # noqa: E402 - below the warmer's start, on purpose (see above); subprocess imports it anyway
import json  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import stat as stat_mode  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

# Read by mypy only: importing typing at run time would cost start-up time on the job's critical path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, BinaryIO

    Json = dict[str, Any]  # a JSON object as json.loads gives it (job.json, started.json, status.json)

STDOUT_FRAME, STDERR_FRAME, STATUS_FRAME, HEARTBEAT_FRAME, LOST_FRAME, STARTED_FRAME = 1, 2, 3, 4, 5, 6

POLL_S = 0.01  # completion is noticed within this (a stat per tick: cheap)
CHUNK = 1 << 20  # bounded reads keep memory flat whatever the job prints
HEARTBEAT_S = 2.0
LAUNCH_WAIT_S = 30.0  # how long a launch may take before we call it failed
CONFIRM_GONE_S = 5.0  # after KILL, how long the group may take to disappear
HAVE_PROC = os.path.isdir("/proc/self")
DISK_CHECK_S = 2.0  # the workdir tree is walked at most this often (output sizes: every tick)
WALK_COST_FACTOR = 10  # ... and never more than a tenth of the wrapper's time, however big the tree
MAX_WALK_ENTRIES = 1000000  # a tree with more entries than this counts as over any disk limit
PR_SET_CHILD_SUBREAPER = 36


def path(workdir: str, name: str) -> str:
    return os.path.join(workdir, name)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 - datetime.UTC is 3.11+, nodes have 3.8


def read_bytes(file_path: str) -> bytes | None:
    try:
        with open(file_path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_json(file_path: str) -> Json | None:
    data = read_bytes(file_path)
    value: Json | None = None if data is None else json.loads(data.decode("utf-8"))
    return value


def write_json_atomic(file_path: str, obj: Json) -> None:
    """tmp + fsync + rename, so a reader sees the whole record or none of it, even after a crash."""
    tmp = f"{file_path}.tmp.{os.getpid()}"
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, file_path)
    try:
        dir_fd = os.open(os.path.dirname(file_path), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    for wakeup in LAUNCHER_WAKEUP:
        wakeup.notify()


def append_text(file_path: str, text: str) -> None:
    with open(file_path, "ab") as f:
        f.write(text.encode("utf-8"))


def claim(workdir: str) -> bool:
    """Create the launch marker; only one caller ever succeeds, so the job starts at most once."""
    try:
        fd = os.open(path(workdir, "launched"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    os.close(fd)
    return True


# --- processes -------------------------------------------------------------------------------------


def proc_stat(pid: int | str) -> tuple[str, int, int] | None:
    """(state, pgrp, start ticks) from /proc, or None when the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()  # the command name may contain spaces and parens
    return fields[0].decode("ascii"), int(fields[2]), int(fields[19])


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Zombies count as dead; start ticks guard against a recycled pid."""
    if HAVE_PROC:
        stat = proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return start_ticks is None or stat[2] == start_ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """True while any member of the group still runs; zombies are gone for every purpose but reaping."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not HAVE_PROC:
        return True
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 - not contextlib.suppress: importing contextlib costs start-up time
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def pid_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class JobProcesses:
    """Every process of one job: its process group (no sandbox), or its sandbox's PID namespace.

    In a sandbox, `sandbox_pid` is the namespace's init (bwrap's reaper, host pid). When it dies the
    kernel kills everything else in the namespace and waits for it before the init itself is gone, so
    "init gone" means "nothing of the job runs", whatever it did with setsid or double forks.
    """

    def __init__(
        self,
        pgid: int,
        sandbox_pid: int | None = None,
        sandbox_ticks: int | None = None,
        main_done: Callable[[], bool] = lambda: True,
    ) -> None:
        self.pgid, self.sandbox_pid, self.sandbox_ticks = pgid, sandbox_pid, sandbox_ticks
        self.main_done = main_done  # True once bwrap itself (our child) is reaped or was never ours

    @classmethod
    def of_started(cls, started: Json) -> JobProcesses:
        return cls(started["pgid"], started.get("sandbox_pid"), started.get("sandbox_start_ticks"))

    def alive(self) -> bool:
        if self.sandbox_pid is None:
            return group_alive(self.pgid)
        return not self.main_done() or pid_alive(self.sandbox_pid, self.sandbox_ticks)

    def signal(self, sig: int) -> None:
        if self.sandbox_pid is None:
            signal_group(self.pgid, sig)
        elif sig == signal.SIGKILL:
            if pid_alive(self.sandbox_pid, self.sandbox_ticks):
                os.kill(self.sandbox_pid, signal.SIGKILL)  # the kernel then kills the whole namespace
            signal_group(self.pgid, signal.SIGKILL)
        else:
            self.signal_members(sig)

    def signal_members(self, sig: int) -> None:
        """TERM to every process in the namespace but its init (which would ignore it anyway) and, in
        root mode, the inner bwrap (drop_to_slot): its death would KILL the job before its grace ran out.
        A job naming itself bwrap only skips the TERM; the KILL after the grace still ends it."""
        init = self.sandbox_pid
        namespace = None if init is None else pid_namespace(init)
        if namespace is None:
            return
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != init and pid_namespace(name) == namespace and not is_bwrap(name):
                try:  # noqa: SIM105 - see signal_group
                    os.kill(int(name), sig)
                except (ProcessLookupError, PermissionError):
                    pass


def is_bwrap(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().strip() == b"bwrap"
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    tick: Callable[[], None],
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        tick()
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        pause(POLL_S)


def kill_job(processes: JobProcesses, grace_s: float, tick: Callable[[], None] = lambda: None) -> bool:
    """TERM, grace, KILL; True once the job is confirmed gone. `tick` lets the daemon reap meanwhile."""
    tick()
    if not processes.alive():
        return True
    # bwrap exits once its init reports the job's exit; the init, still tearing its namespace down, is
    # then waited for on its pidfd, not by the next poll.
    pause = ExitWait(processes.sandbox_pid) if processes.sandbox_pid else None
    try:
        processes.signal(signal.SIGTERM)
        if wait_until(lambda: not processes.alive(), grace_s, tick, pause or time.sleep):
            return True
        processes.signal(signal.SIGKILL)
        return wait_until(lambda: not processes.alive(), CONFIRM_GONE_S, tick, pause or time.sleep)
    finally:
        if pause is not None:
            pause.close()


def become_subreaper() -> None:
    """Orphans of the job re-parent to the daemon, which reaps them, instead of an init that may not."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # noqa: S110 - best effort: without it, zombies are still treated as gone
        pass


class Reaper:
    """Reaps every child of the daemon; keeps the job main process's wait status."""

    def __init__(self, main_pid: int) -> None:
        self.main_pid = main_pid
        self.wait_status: int | None = None

    def __call__(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main_pid:
                self.wait_status = wait_status


class ExitWait:
    """Sleeps between the daemon's checks, but wakes as soon as a process (the job's main one, or its
    sandbox's init) exits: its pidfd (Linux 5.3+, Python 3.9+) turns readable then, so the exit is
    noticed at once, not up to a tick later. It wakes once: later calls, and calls where there is no
    pidfd, are plain sleeps (a pidfd stays readable, and a caller still waiting for something else
    must not spin)."""

    def __init__(self, pid: int) -> None:
        try:
            self.fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # Python 3.8, or a kernel before 5.3
            self.fd = None

    def __call__(self, seconds: float) -> None:
        if self.fd is None:
            time.sleep(seconds)
        elif select.select([self.fd], [], [], seconds)[0]:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def exit_fields(wait_status: int | None, sandboxed: bool = False) -> tuple[int | None, int | None]:
    if wait_status is None:
        return None, None
    if os.WIFSIGNALED(wait_status):
        return None, os.WTERMSIG(wait_status)
    code = os.WEXITSTATUS(wait_status)
    if sandboxed and 128 < code < 128 + 65:  # bwrap reports its command's death by signal N as 128+N
        return None, code - 128
    return code, None


def status_record(started_at: str | None, exit_code: int | None = None, sig: int | None = None, **flags: Any) -> Json:
    record = {
        "exit_code": exit_code,
        "signal": sig,
        "timed_out": False,
        "cancelled": False,
        "started_at": started_at,
        "ended_at": now_iso(),
        "group_gone": True,
        "error": None,
        "disk_limit": False,
        "output_limit": False,
        "notice": None,
    }
    record.update(flags)
    return record


# --- the sandbox -----------------------------------------------------------------------------------

WORK_DIR = "work"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Of /etc only what Python, CUDA, TLS, name resolution and locale read: never the node's keys and configs.
ETC_ALLOWED = (
    "/etc/alternatives", "/etc/ca-certificates", "/etc/ca-certificates.conf", "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf", "/etc/pki/tls/certs", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/localtime", "/etc/timezone", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf",
    "/etc/gai.conf", "/etc/services", "/etc/protocols", "/etc/passwd", "/etc/group", "/etc/os-release",
    "/etc/lsb-release", "/etc/debian_version", "/etc/mime.types", "/etc/locale.alias", "/etc/locale.conf",
    "/etc/default/locale", "/etc/matplotlibrc", "/etc/OpenCL", "/etc/vulkan", "/etc/nvidia", "/etc/glvnd",
    "/etc/fonts", "/etc/magic", "/etc/mailcap",
)  # fmt: skip
ETC_PREFIXES = ("python3",)  # /etc/python3, /etc/python3.11: sysconfig and site defaults
SECCOMP_NAME = "seccomp.bpf"  # the filter bwrap loads, built by the server (executors/seccomp.py)
GPU_SHARED_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
LIMITS = (("max_processes", "RLIMIT_NPROC"), ("max_open_files", "RLIMIT_NOFILE"), ("max_memory_bytes", "RLIMIT_AS"))
INSTALL_HINT = "install bubblewrap (apt-get install -y bubblewrap)"


def find_program(name: str) -> str | None:
    """The program on the wrapper's own PATH (what the node user would run), or None."""
    for directory in os.environ.get("PATH", DEFAULT_PATH).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def job_environment(spec_env: Json | None, workdir: str) -> dict[str, str]:
    """Built from nothing: a few neutral variables, then what the runner put in job.json. Never ours."""
    env = {"PATH": DEFAULT_PATH, "HOME": workdir, "LANG": "C.UTF-8", "USER": "job", "LOGNAME": "job"}
    env["TMPDIR"] = "/tmp"  # noqa: S108 - the sandbox's own tmpfs, private to the job
    env.update({str(k): str(v) for k, v in (spec_env or {}).items()})
    return env


def covered(target: str, dirs: Iterable[str]) -> bool:
    return any(target == d or target.startswith(d.rstrip("/") + "/") for d in dirs)


def etc_paths() -> list[str]:
    """The allowed part of the node's /etc that exists here."""
    try:
        extra = ["/etc/" + n for n in sorted(os.listdir("/etc")) if n.startswith(ETC_PREFIXES)]
    except OSError:
        extra = []
    return [p for p in (*ETC_ALLOWED, *extra) if os.path.exists(p)]


def nvidia_smi(sandbox: Json) -> str | None:
    """The node's nvidia-smi: the admin's NVIDIA_SMI path when set (outside PATH), else the one on PATH."""
    given = sandbox.get("nvidia_smi")
    if given:
        return str(given) if os.path.isfile(given) and os.access(given, os.X_OK) else None
    return find_program("nvidia-smi")


def nvidia_minors(program: str | None) -> dict[int, int]:
    """nvidia-smi's index -> the device minor (/dev/nvidia<minor>); they differ on some machines."""
    if program is None:
        return {}
    query = [program, "--query-gpu=index,minor_number", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, timeout=30, check=True).stdout.decode("ascii", "replace")
    except (OSError, subprocess.SubprocessError):
        return {}
    pairs = [line.replace(" ", "").split(",") for line in out.splitlines() if line.strip()]
    return {int(i): int(m) for i, m in pairs if i.isdigit() and m.isdigit()}


def slurm_gpu_ids(environ: Mapping[str, str]) -> list[int]:
    """The GPUs Slurm allocated to this job, as its gres IDs (the N of gres.conf's File=/dev/nvidiaN)."""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        ids = [g for g in environ.get(name, "").split(",") if g.strip().isdigit()]
        if ids:
            return [int(g) for g in ids]
    return []


def job_gpu_minors(sandbox: Json, environ: Mapping[str, str]) -> list[int]:
    """The minors of the job's own GPUs: given (local runner), mapped from nvidia-smi indices on this
    node (SSH), or Slurm's allocation; nothing else, and no GPU at all when the job was given none."""
    minors = {int(g) for g in sandbox.get("gpus") or ()}
    indices = sandbox.get("gpu_indices") or []
    if indices:
        mapping = nvidia_minors(nvidia_smi(sandbox))
        minors.update(mapping.get(int(i), int(i)) for i in indices)  # no driver to ask: index is minor
    if sandbox.get("gpus_from_slurm"):
        minors.update(slurm_gpu_ids(environ))
    return sorted(minors)


def gpu_devices(sandbox: Json, environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(node path, path in the sandbox) of the job's /dev/nvidia<minor> and the driver's shared nodes."""
    dev = sandbox.get("gpu_device_dir") or "/dev"
    minors = job_gpu_minors(sandbox, os.environ if environ is None else environ)
    numbered = [f"nvidia{m}" for m in minors if os.path.exists(os.path.join(dev, f"nvidia{m}"))]
    if not numbered:
        return []
    shared = [n for n in GPU_SHARED_DEVICES if os.path.exists(os.path.join(dev, os.path.basename(n)))]
    return [(os.path.join(dev, os.path.basename(n)), n) for n in shared] + [
        (os.path.join(dev, n), "/dev/" + n) for n in numbered
    ]


# --- GPU telemetry ---------------------------------------------------------------------------------

GPU_NAME = "gpu.json"
GPU_KEEP = 60  # samples per GPU kept in gpu.json: the server reads it every GPU_SAMPLE_S, so it misses none
GPU_QUERY = "--query-gpu=index,utilization.gpu,memory.used,memory.total,power.draw"


def csv_number(text: str) -> float | None:
    """A number of nvidia-smi's CSV; None for "[N/A]", "[Not Supported]" and the like."""
    try:
        return float(text)
    except ValueError:
        return None


def gpu_sample(fields: list[str], now: float) -> Json | None:
    """One CSV line of GPU_QUERY as a sample (index, %, MiB, MiB, W); None when unreadable."""
    numbers = [csv_number(f) for f in fields[:5]]
    if len(numbers) < 4 or None in numbers[:4]:
        return None
    sample = {"t": round(now, 3), "index": int(fields[0]), "util": numbers[1], "mem_used": int(numbers[2] or 0)}
    sample["mem_total"] = int(numbers[3] or 0)
    if len(numbers) > 4 and numbers[4] is not None:
        sample["power"] = numbers[4]
    return sample


def query_gpus(program: str | None, indices: list[int]) -> list[Json]:
    """One nvidia-smi sample of the GPUs with these indices; [] without nvidia-smi or an answer."""
    if program is None or not indices:
        return []
    argv = [program, GPU_QUERY, "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, check=True).stdout.decode("ascii", "replace")
    except (OSError, subprocess.SubprocessError):
        return []
    now = time.time()
    samples = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        sample = gpu_sample(fields, now) if fields[0].isdigit() and int(fields[0]) in indices else None
        if sample is not None:
            samples.append(sample)
    return samples


def job_gpu_indices(sandbox: Json, environ: Mapping[str, str]) -> list[int]:
    """nvidia-smi's indices of the job's own GPUs: its minors (however they were given) mapped back."""
    minors = job_gpu_minors(sandbox, environ)
    if not minors:
        return []
    by_minor = {m: i for i, m in nvidia_minors(nvidia_smi(sandbox)).items()}
    return sorted(by_minor.get(m, m) for m in minors)  # no driver to ask: the minor is the index


class GpuSampler:
    """Samples the job's GPUs every ``gpu_sample_s`` of its spec into gpu.json (its last samples only,
    ``{"samples": [...]}``), which the server fetches (executors/gpu_watch.py)."""

    def __init__(self, workdir: str, spec: Json, environ: Mapping[str, str]) -> None:
        self.every = float(spec.get("gpu_sample_s") or 0)
        sandbox = spec.get("sandbox") or {}
        self.program = nvidia_smi(sandbox) if self.every > 0 else None
        # no driver here: no telemetry
        self.indices = job_gpu_indices(sandbox, environ) if self.program is not None else []
        self.file = path(workdir, GPU_NAME)
        self.kept: list[Json] = []
        self.next_at = time.monotonic()

    def tick(self) -> None:
        if not self.indices or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.every
        fresh = query_gpus(self.program, self.indices)
        if fresh:
            self.kept = (self.kept + fresh)[-GPU_KEEP * len(self.indices) :]
            write_json_atomic(self.file, {"samples": self.kept})


def seccomp_fds(seccomp_path: str, required: bool = True) -> dict[str, int]:
    """The filter, opened by the wrapper for bwrap to read; {} only for the probe on a bare root."""
    try:
        return {"seccomp": os.open(seccomp_path, os.O_RDONLY)}
    except OSError:
        if required:  # no filter, no job: never a sandbox quietly weaker than the one documented
            raise
    return {}


def close_fds(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def sandbox_argv(sandbox: Json, workdir: str, command: str, fds: dict[str, int] | None = None) -> list[str]:
    """bwrap's command line: what the job sees is built up from an empty root (``fds``: seccomp_fds)."""
    bwrap = find_program("bwrap") or "bwrap"
    seccomp = ["--seccomp", str(fds["seccomp"])] if fds and "seccomp" in fds else []
    argv = [bwrap, "--die-with-parent", "--new-session", *namespace_flags(sandbox)]
    argv += [] if os.geteuid() == 0 else seccomp  # as root, the inner bwrap (drop_to_slot) loads it
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    # A fresh /proc (the job's PID namespace only), a minimal /dev, and private tmpfs /tmp and /dev/shm.
    size = ["--size", str(sandbox["tmpfs_bytes"])] if sandbox.get("tmpfs_bytes") else []  # charged to the job
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", *size, "--tmpfs", "/tmp"]  # noqa: S108
    argv += ["--perms", "1777", *size, "--tmpfs", "/dev/shm"]  # noqa: S108
    for device, target in gpu_devices(sandbox):
        argv += ["--dev-bind", device, target]
    readonly = [os.path.abspath(p) for p in sandbox.get("readonly_paths") or () if os.path.exists(p)]
    readonly = [p for p in readonly if not covered(p, SYSTEM_DIRS)]
    etc = etc_paths()
    argv += mount_points([*etc, *readonly, workdir])
    for p in [*etc, *readonly]:
        argv += ["--ro-bind", p, p]
    argv += ["--bind", workdir, workdir, "--chdir", workdir, "--"]
    if os.geteuid() == 0:
        argv += drop_to_slot(int(sandbox["uid"]), bwrap, workdir, seccomp)
    return [*argv, "bash", "-c", command]


def namespace_flags(sandbox: Json) -> list[str]:
    """The outer bwrap's namespaces. Run as root it makes no user namespace (bwrap would map the
    job's uid to root outside); drop_to_slot makes one, as the slot's uid."""
    if os.geteuid() == 0:
        argv = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        return argv + (["--unshare-net"] if sandbox.get("network", "none") == "none" else [])
    argv = ["--unshare-all", "--unshare-user", "--disable-userns"]  # its own user namespace, no further one
    return argv + (["--share-net"] if sandbox.get("network", "none") == "host" else [])


def drop_to_slot(uid: int, bwrap: str, workdir: str, seccomp: list[str]) -> list[str]:
    """Root only, inside the built sandbox: become the slot's unprivileged uid (setpriv), then a second
    bwrap makes a user namespace owned by it (the job's uid outside stays the slot's, uid_map
    "uid uid 1") only to disable nested ones, binds the sandbox's root as it is and loads the filter.
    The outer bwrap cannot do this as root (docs/design.md, "Nested user namespaces in root mode")."""
    argv = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--inh-caps=-all"]
    argv += ["--bounding-set=-all", "--no-new-privs", "--"]
    argv += [bwrap, "--die-with-parent", "--unshare-user", "--disable-userns", *seccomp]
    return [*argv, "--dev-bind", "/", "/", "--chdir", workdir, "--"]


def mount_points(targets: Iterable[str]) -> list[str]:
    """World-readable empty directories above each bind target (bwrap would copy the host's modes)."""
    made, argv = {"/", "/tmp", "/dev", "/proc"}, []  # noqa: S108 - mount points inside the sandbox
    for target in sorted(targets):
        parts = target.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in made and not covered(parent, SYSTEM_DIRS):
                made.add(parent)
                argv += ["--perms", "0755", "--dir", parent]
    return argv


def confine(limits: Json, cgroup: JobCgroup | None = None, umask: int | None = None) -> Callable[[], None]:
    """Runs in the child between fork and exec: the job's cgroup, its OOM score and resource limits,
    all inherited by the whole sandbox. With a cgroup, its pids.max replaces RLIMIT_NPROC (per uid,
    which counts every slot of a non-root node user together). ``umask``: the job's, when given."""
    import resource  # only here: the daemon alone needs it

    chosen = []
    procs = [] if cgroup is None else cgroup.procs_files()
    for key, name in LIMITS:
        if cgroup is not None and name == "RLIMIT_NPROC":
            continue
        which, value = getattr(resource, name), int(limits.get(key) or 0)
        hard = resource.getrlimit(which)[1]
        if value > 0:  # never above what we have ourselves: raising a hard limit needs CAP_SYS_RESOURCE
            chosen.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))

    def preexec() -> None:
        pid = str(os.getpid()).encode("ascii")
        for procs_file in procs:  # before exec: nothing of the job ever runs outside its cgroup
            fd = os.open(procs_file, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        set_oom_score_adj(JOB_OOM_SCORE_ADJ)
        for which, value in chosen:
            resource.setrlimit(which, (value, value))
        if umask is not None:
            os.umask(umask)

    return preexec


def hand_over_workdir(workdir: str, uid: int, gid: int | None = None) -> None:
    """Root only: the job's workdir (and what the runner put in it) belongs to the slot's uid. With
    ``gid`` (own ids: the node user's group) the non-root server still reads what the job leaves
    there: the group's, setgid so the job's files keep it, shut to others (the other slots)."""
    group, mode = (uid, 0o700) if gid is None else (gid, 0o2750)
    os.chown(workdir, uid, group)
    os.chmod(workdir, mode)
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, group)


def job_umask(sandbox: Json) -> int | None:
    """Own ids: what the job writes stays readable by its workdir's group, the node user, who collects
    results and artifacts (under a root wrapper root reads them; otherwise the job is the node user)."""
    return None if sandbox.get("workdir_gid") is None else 0o027


def read_child_pid(fd: int, timeout_s: float) -> int | None:
    """bwrap's first --json-status-fd document names the sandbox's init; EOF first: setup failed."""
    buffer, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buffer += chunk
        try:
            document, _ = json.JSONDecoder().raw_decode(buffer.decode("utf-8").strip())
        except ValueError:
            continue
        return int(document["child-pid"])
    return None


def sandbox_problem(workdir: str, sandbox: Json, cgroup_parent: str | None = None) -> str | None:
    """None when a sandbox like a job's (in a cgroup like a job's, with a parent) can be built here;
    otherwise one line naming the fix."""
    if cgroup_parent is None:
        return bwrap_problem(workdir, sandbox, None)
    try:
        resources = {"cgroups": True, "cgroup_parent": cgroup_parent, "max_pids": 64}  # every file a job's has
        cgroup = job_cgroup(resources, f"probe-{os.getpid()}", 64 << 20)
    except CgroupUnavailable as e:
        return str(e)
    try:
        return bwrap_problem(workdir, sandbox, cgroup)
    finally:
        if cgroup is not None:  # never None here: the resources ask for cgroups
            cgroup.remove()


def bwrap_problem(workdir: str, sandbox: Json, cgroup: JobCgroup | None) -> str | None:
    """Builds the sandbox around `true` (in ``cgroup`` when given); None when that worked."""
    if find_program("bwrap") is None:
        return f"bwrap (bubblewrap) is not installed: {INSTALL_HINT}"
    if os.geteuid() == 0 and find_program("setpriv") is None:
        return "setpriv is not installed: install util-linux (apt-get install -y util-linux)"
    os.makedirs(workdir, exist_ok=True)
    if os.geteuid() == 0:  # as for a job: the slot's uid must be able to enter it (drop_to_slot's --chdir)
        hand_over_workdir(workdir, int(sandbox["uid"]), sandbox.get("workdir_gid"))
    fds = seccomp_fds(path(os.path.dirname(os.path.dirname(workdir)), SECCOMP_NAME), required=False)
    try:
        argv = sandbox_argv(sandbox, workdir, "true", fds)
        done = subprocess.run(
            argv,
            pass_fds=tuple(fds.values()),
            preexec_fn=confine({}, cgroup),
            env={"PATH": DEFAULT_PATH},
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
    except subprocess.SubprocessError as e:  # the preexec could not join the cgroup
        return f"cannot put a process in the job's cgroup ({e}): {DELEGATION_HINT}"
    finally:
        close_fds(fds)
    if done.returncode == 0:
        return None
    why = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
    return (
        f"bwrap cannot build a sandbox here ({why[0]}): allow user namespaces "
        "(sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000; a root wrapper needs them too)"
    )


# --- resource limits: the job's own cgroup ---------------------------------------------------------

CGROUP_CONTROLLERS = ("memory", "pids", "cpu")
DAEMON_OOM_SCORE_ADJ = -500  # the kernel's OOM killer takes any job before a wrapper daemon...
JOB_OOM_SCORE_ADJ = 1000  # ...and a job's processes before anything else on the node
CPU_PERIOD_US = 100000
DELEGATION_HINT = (
    "run the wrapper as root, or give the node user a delegated cgroup subtree (docs/admin-guide.md, "
    '"Resource limits"), or turn job cgroups off with JOB_CGROUPS = false'
)


class CgroupUnavailable(Exception):
    """The job's cgroup cannot be made or configured here; the message names the fix."""


def mem_total() -> int | None:
    """This node's RAM in bytes (MemTotal), or None where /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_limit(resources: Json) -> int:
    """The job's memory limit in bytes (0: none): the server's number, or its share of this node's RAM."""
    chosen = int(resources.get("memory_bytes") or 0)
    share = float(resources.get("memory_share") or 0)
    if chosen <= 0 and share > 0:
        chosen = int((mem_total() or 0) * share)
    return max(chosen, 0)


def tmpfs_size(resources: Json, limit: int) -> int:
    """Bytes for each of /tmp and /dev/shm (0: unsized): written by the job, charged to its cgroup."""
    share = float(resources.get("tmpfs_share") or 0)
    return int(limit * share) if limit > 0 and share > 0 else 0


def read_counter(file_path: str, key: str) -> int | None:
    """``key N`` from a flat-keyed cgroup file (memory.events, memory.oom_control, pids.events)."""
    try:
        with open(file_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
    except (OSError, ValueError):
        pass
    return None


class JobCgroup:
    """One job's cgroup behind one small interface: v2 (a single directory under the unified
    hierarchy, which has cgroup.controllers) or v1 (one directory per controller hierarchy)."""

    def __init__(self, parent: str, name: str, fs: str = CGROUP_FS) -> None:
        parts = [p for p in str(parent).split("/") if p] + [name]
        if any(p in (".", "..") for p in parts):
            raise CgroupUnavailable(f"JOB_CGROUP_PARENT {parent!r} must not contain . or ..")
        self.fs, self.parent_parts = fs, parts[:-1]
        self.v2 = os.path.exists(os.path.join(fs, "cgroup.controllers"))
        self.version = "v2" if self.v2 else "v1"
        top = {c: fs if self.v2 else os.path.join(fs, c) for c in CGROUP_CONTROLLERS}
        self.dirs = {c: os.path.join(top[c], *parts) for c in CGROUP_CONTROLLERS}
        self.made: list[str] = []

    def unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self.dirs.values()))

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.unique_dirs()]

    def create(self, memory: int, pids: int, cpu_weight: int, cpu_quota: float) -> None:
        """Make the directories and set every limit; raises CgroupUnavailable naming the fix."""
        try:
            self.make_dirs()
            for controller, name, value, required in self.settings(memory, pids, cpu_weight, cpu_quota):
                self.write(controller, name, value, required)
        except CgroupUnavailable:
            self.remove()
            raise
        except OSError as e:
            self.remove()
            raise CgroupUnavailable(
                f"cannot set up the job's cgroup ({e.strerror}: {e.filename}): {DELEGATION_HINT}"
            ) from None

    def make_dirs(self) -> None:
        """The job's directories (v2: with the controllers enabled above them); existing ones are kept:
        the launcher makes them ahead (``prepare_cgroup``), and one left by a wrapper that died is as
        good as a new one."""
        if self.v2:
            self.enable_controllers()
        for d in self.unique_dirs():
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if not os.path.isdir(d):
                os.mkdir(d)
            if d not in self.made:
                self.made.append(d)

    def settings(
        self, memory: int, pids: int, cpu_weight: int, cpu_quota: float
    ) -> list[tuple[str, str, object, bool]]:
        """(controller, file, value, required) to write; a swap limit only where the kernel accounts swap."""
        quota = int(cpu_quota * CPU_PERIOD_US) if cpu_quota > 0 else 0
        if self.v2:  # the last column: whether the row applies
            table = [
                ("memory", "memory.max", memory, True, memory),
                ("memory", "memory.swap.max", 0, False, memory),  # no swap: the limit is RAM
                ("pids", "pids.max", pids, True, pids),
                ("cpu", "cpu.weight", cpu_weight, True, True),
                ("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}", True, quota),
            ]
        else:
            table = [
                ("memory", "memory.limit_in_bytes", memory, True, memory),
                ("memory", "memory.memsw.limit_in_bytes", memory, False, memory),  # RAM + swap = RAM
                ("pids", "pids.max", pids, True, pids),
                ("cpu", "cpu.shares", max(2, cpu_weight * 1024 // 100), True, True),
                ("cpu", "cpu.cfs_period_us", CPU_PERIOD_US, True, quota),
                ("cpu", "cpu.cfs_quota_us", quota, True, quota),
            ]
        return [row[:4] for row in table if row[4]]

    def write(self, controller: str, name: str, value: object, required: bool) -> None:
        file_path = os.path.join(self.dirs[controller], name)
        if not os.path.exists(file_path):
            if required:
                raise CgroupUnavailable(
                    f"the {controller} controller is not available in {self.dirs[controller]} "
                    f"({name} is missing): {DELEGATION_HINT}"
                )
            return
        with open(file_path, "w") as f:
            f.write(f"{value}\n")

    def enable_controllers(self) -> None:
        """v2: a controller's files appear in a cgroup only once every ancestor lists it in subtree_control."""
        directory = self.fs
        for part in [None, *self.parent_parts]:
            if part is not None:
                directory = os.path.join(directory, part)
                os.makedirs(directory, exist_ok=True)
            control = os.path.join(directory, "cgroup.subtree_control")
            try:
                with open(control) as f:
                    present = set(f.read().split())
                missing = [c for c in CGROUP_CONTROLLERS if c not in present]
                if missing:
                    with open(control, "w") as f:
                        f.write(" ".join("+" + c for c in missing))
            except OSError:
                pass  # not ours to change (a delegated subtree has them on already); create() says what is missing

    def keep_warm(self, warmer: MigrationWarmer | None = None) -> None:
        """Keep the migration path warm (``MigrationWarmer``) until the job has joined this cgroup:
        ``warmer`` is the one the wrapper started at its first moment; without it, one starts now."""
        if warmer is None:
            own = self.own_procs_file()
            if own is None:
                return
            warmer = MigrationWarmer(own).start()
        warmer.joined = os.path.join(self.dirs["memory"], "cgroup.procs")

    def own_procs_file(self) -> str | None:
        return own_procs_file(self.fs)

    def oom_kills(self) -> int:
        """OOM kills the kernel counted in this cgroup (v2 memory.events; v1 memory.oom_control)."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        return read_counter(os.path.join(self.dirs["memory"], name), "oom_kill") or 0

    def discard(self) -> None:
        """Remove the job's directories wherever they exist, whoever made them (nothing ran in them)."""
        self.made = [d for d in self.unique_dirs() if os.path.isdir(d)]
        self.remove()

    def remove(self) -> None:
        """rmdir, children first; the last processes of a killed job may take a moment to leave."""
        for d in reversed(self.made):
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(POLL_S)
        self.made = []


def prepare_cgroup(workdir: str) -> JobCgroup | None:
    """In the launcher, before the daemon is spawned: make the job's cgroup directories, whose
    migration path the launcher then keeps warm (``JobCgroup.keep_warm``) until the job joins, so the
    daemon's set-up runs while the kernel's grace period passes. Best effort (None): the daemon makes
    the cgroup again and says what is wrong."""
    spec = read_json(path(workdir, "job.json")) or {}
    resources = spec.get("resources") or {}
    if not resources.get("cgroups") or os.path.exists(path(workdir, "cancel")):
        return None
    try:
        cgroup = named_cgroup(resources, workdir)
        cgroup.make_dirs()
    except (CgroupUnavailable, OSError):
        return None
    return cgroup


def named_cgroup(resources: Json, workdir: str) -> JobCgroup:
    """The (not yet made) cgroup of the job in ``workdir``."""
    return JobCgroup(resources.get("cgroup_parent") or "gpuledger", "job-" + os.path.basename(workdir))


def job_cgroup(resources: Json, name: str, limit: int) -> JobCgroup | None:
    """The job's cgroup, made and configured; None when cgroups are off for this job."""
    if not resources.get("cgroups"):
        return None
    cgroup = JobCgroup(resources.get("cgroup_parent") or "gpuledger", name)
    cpu_weight = min(max(int(resources.get("cpu_weight") or 100), 1), 10000)
    cgroup.create(limit, int(resources.get("max_pids") or 0), cpu_weight, float(resources.get("cpu_quota") or 0))
    return cgroup


def set_oom_score_adj(value: int) -> None:
    """Lowering needs root (CAP_SYS_RESOURCE); raising is always allowed. Best effort either way."""
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, str(value).encode("ascii"))
        finally:
            os.close(fd)
    except OSError:
        pass


# --- the daemon ------------------------------------------------------------------------------------


def spawn_daemon(
    workdir: str, cgroup: JobCgroup | None = None, warmer: MigrationWarmer | None = None, wakeup: Wakeup | None = None
) -> None:
    """Double fork + setsid: the daemon has no terminal and no parent to take it down with the session.
    ``cgroup``: the job's, made ahead; its migration path is kept warm by ``warmer`` (running since the
    wrapper's start) or from here (after the fork: then the launcher forks single-threaded). The daemon
    wakes the launcher through ``wakeup`` after each record it writes."""
    sys.stdout.flush()
    child = fork_beside(warmer)
    if child > 0:
        if cgroup is not None:
            cgroup.keep_warm(warmer)
        os.waitpid(child, 0)
        return
    try:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        if wakeup is not None:
            os.close(wakeup.read_fd)
            LAUNCHER_WAKEUP.append(wakeup)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # an inherited pipe would keep the SSH channel (or our caller) open
            os.dup2(devnull, fd)
        os.chdir("/")
        run_daemon(workdir)
    except BaseException:  # a forked child must never return into the caller's code
        import traceback  # only here: every import is start-up time on the job's critical path

        append_text(path(workdir, "wrapper.log"), traceback.format_exc())
        os._exit(1)
    os._exit(0)


def fork_beside(warmer: MigrationWarmer | None) -> int:
    """os.fork while the warmer's thread may run. That thread only makes system calls and sleeps, so it
    holds nothing the child needs; Python 3.12+ would warn about the fork on the launcher's stderr."""
    if warmer is None or sys.version_info < (3, 12):
        return os.fork()
    import warnings  # only here: every import is start-up time on the job's critical path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def load_spec(workdir: str) -> tuple[str, float | None, float, Json, Json]:
    spec = read_json(path(workdir, "job.json"))
    if spec is None:
        raise ValueError("job.json is missing")
    limit = spec.get("time_limit_s")
    sandbox = spec.get("sandbox") or {"mode": "bwrap"}
    if sandbox.get("mode") not in ("bwrap", "none"):
        raise ValueError(f"unknown sandbox mode {sandbox.get('mode')!r}")
    return spec["command"], (float(limit) if limit else None), float(spec.get("grace_s", 5.0)), spec, sandbox


def run_daemon(workdir: str) -> None:
    try:
        command, limit_s, grace_s, spec, sandbox = load_spec(workdir)
    except (OSError, ValueError, KeyError, TypeError) as e:
        write_json_atomic(path(workdir, "status.json"), status_record(None, error=f"bad job.json: {e!r}"))
        return
    if os.path.exists(path(workdir, "cancel")):  # cancelled before it ever started
        if (spec.get("resources") or {}).get("cgroups"):  # the launcher may have made it (prepare_cgroup)
            named_cgroup(spec["resources"], workdir).discard()
        write_json_atomic(path(workdir, "status.json"), status_record(None, cancelled=True))
        return
    ids = own_ids()[0] if sandbox.get("mode") == "bwrap" and os.geteuid() != 0 else None
    if ids is not None:
        try:  # the job's daemon is root of the job's own user namespace: the root wrapper's way
            in_own_ids(
                ids, lambda: confine_and_launch(workdir, command, (limit_s, grace_s), spec, ids.sandbox(sandbox))
            )
            return
        except NoOwnIds:
            pass  # as on a node without subordinate ids; the server's probe says why
    confine_and_launch(workdir, command, (limit_s, grace_s), spec, sandbox)


def confine_and_launch(
    workdir: str, command: str, limits_s: tuple[float | None, float], spec: Json, sandbox: Json
) -> None:
    """The job's cgroup, then the job (``launch``); the cgroup is removed after it."""
    become_subreaper()
    set_oom_score_adj(DAEMON_OOM_SCORE_ADJ)
    resources = spec.get("resources") or {}
    memory = memory_limit(resources)
    sandbox = dict(sandbox, tmpfs_bytes=tmpfs_size(resources, memory))
    try:
        cgroup = job_cgroup(resources, "job-" + os.path.basename(workdir), memory)
    except CgroupUnavailable as e:
        write_json_atomic(path(workdir, "status.json"), status_record(None, exit_code=127, error=str(e)))
        return
    try:
        launch(workdir, command, limits_s, spec, sandbox, (cgroup, memory))
    finally:
        if cgroup is not None:
            cgroup.remove()


def launch(
    workdir: str,
    command: str,
    limits_s: tuple[float | None, float],
    spec: Json,
    sandbox: Json,
    confinement: tuple[JobCgroup | None, int],
) -> None:
    """Start the job in its sandbox (and cgroup), record started.json, supervise it to its end."""
    limit_s, grace_s = limits_s
    job_dir = path(workdir, WORK_DIR)
    env = job_environment(spec.get("env"), job_dir)
    started_at = now_iso()
    try:
        proc, status_fd = start_job(command, sandbox, job_dir, env, workdir, confinement[0])
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        record = status_record(None, exit_code=127, error=f"could not start the job: {e}")
        write_json_atomic(path(workdir, "status.json"), record)
        return
    sandbox_pid = None if status_fd is None else read_child_pid(status_fd, LAUNCH_WAIT_S)
    if status_fd is not None and sandbox_pid is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(status_fd)
        record = status_record(None, exit_code=127, error="the sandbox could not be set up (see stderr)")
        write_json_atomic(path(workdir, "status.json"), record)
        return
    stat = proc_stat(os.getpid()) if HAVE_PROC else None
    inner = proc_stat(sandbox_pid) if sandbox_pid and HAVE_PROC else None
    started = {
        "pid": proc.pid,
        "pgid": proc.pid,
        "wrapper_pid": os.getpid(),
        "wrapper_start_ticks": stat[2] if stat else None,
        "started_at": started_at,
        "sandbox_pid": sandbox_pid,
        "sandbox_start_ticks": inner[2] if inner else None,
    }
    write_json_atomic(path(workdir, "started.json"), started)
    supervise(workdir, proc, started, limit_s, grace_s, confinement)
    if status_fd is not None:
        os.close(status_fd)


def start_job(
    command: str, sandbox: Json, job_dir: str, env: dict[str, str], workdir: str, cgroup: JobCgroup | None = None
) -> tuple[subprocess.Popen[bytes], int | None]:
    """The job's process: bwrap around `bash -c COMMAND`, or bash alone when the sandbox is off."""
    status_fd = write_fd = None
    argv, fds = ["bash", "-c", command], {}
    if sandbox.get("mode") == "bwrap":
        if os.geteuid() == 0:
            hand_over_workdir(job_dir, int(sandbox["uid"]), sandbox.get("workdir_gid"))
        fds = seccomp_fds(path(workdir, SECCOMP_NAME))
        status_fd, write_fd = os.pipe()
        argv = sandbox_argv(sandbox, job_dir, command, fds)
        argv[1:1] = ["--json-status-fd", str(write_fd)]
    try:
        with open(path(workdir, "stdout"), "ab") as out, open(path(workdir, "stderr"), "ab") as err:
            proc = subprocess.Popen(
                argv,
                cwd=job_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                pass_fds=(() if write_fd is None else (write_fd,)) + tuple(fds.values()),
                preexec_fn=confine(sandbox.get("limits") or {}, cgroup, job_umask(sandbox)),
            )
    except OSError:
        if status_fd is not None:
            os.close(status_fd)
        raise
    finally:
        if write_fd is not None:
            os.close(write_fd)
        close_fds(fds)
    return proc, status_fd


def supervise(
    workdir: str,
    proc: subprocess.Popen[bytes],
    started: Json,
    limit_s: float | None,
    grace_s: float,
    confinement: tuple[JobCgroup | None, int] = (None, 0),
) -> None:
    reaper = Reaper(proc.pid)
    sandboxed = started["sandbox_pid"] is not None
    processes = JobProcesses(
        proc.pid, started["sandbox_pid"], started["sandbox_start_ticks"], lambda: reaper.wait_status is not None
    )
    reason = watch(workdir, reaper, limit_s)
    # Even after a clean exit, nothing the job left behind may outlive it.
    gone = kill_job(processes, grace_s, reaper)
    if reaper.wait_status is None:
        reaper()
    proc.returncode = -1  # we reaped it ourselves; stops Popen from warning or waiting on it again
    exit_code, sig = exit_fields(reaper.wait_status, sandboxed)
    record = status_record(
        started["started_at"],
        exit_code,
        sig,
        timed_out=reason == "timed_out",
        cancelled=reason == "cancelled",
        group_gone=gone,
        **memory_outcome(*confinement),
        **stop_flags(reason, limit_s, usage_limits(workdir)),
    )
    write_json_atomic(path(workdir, "status.json"), record)


def memory_outcome(cgroup: JobCgroup | None, memory: int) -> Json:
    """Whether the kernel killed any process of the job for memory, from its cgroup's own counter."""
    oom_kills = 0 if cgroup is None else cgroup.oom_kills()
    return {"out_of_memory": oom_kills > 0, "memory_limit_bytes": memory or None}


def watch(workdir: str, reaper: Reaper, limit_s: float | None) -> str:
    """Wait for the first of: the main process exits, a cancel request, the time limit, a disk or
    output limit."""
    deadline = None if limit_s is None else time.monotonic() + limit_s
    cancel_path = path(workdir, "cancel")
    usage = DiskWatch(workdir, usage_limits(workdir))
    gpus = GpuSampler(workdir, read_json(path(workdir, "job.json")) or {}, os.environ)
    pause = ExitWait(reaper.main_pid)
    try:
        while True:
            gpus.tick()
            reaper()
            if reaper.wait_status is not None:
                return "exited"
            if os.path.exists(cancel_path):
                return "cancelled"
            if deadline is not None and time.monotonic() >= deadline:
                return "timed_out"
            over = usage.check()
            if over is not None:
                return over
            pause(POLL_S)
    finally:
        pause.close()


# --- disk and output limits ------------------------------------------------------------------------


def usage_limits(workdir: str) -> tuple[int, int]:
    """(max disk bytes, max bytes per output file) from job.json; 0 is no limit."""
    spec = read_json(path(workdir, "job.json")) or {}
    return int(spec.get("max_disk_bytes") or 0), int(spec.get("max_output_bytes") or 0)


def stop_flags(reason: str, limit_s: float | None, limits: tuple[int, int]) -> Json:
    """status.json's record of why the wrapper stopped the job, in the wrapper's words, never in the
    job's stderr (where the job could write the same line)."""
    notices = {
        "timed_out": f"job exceeded its time limit of {limit_s or 0:g} s and was killed",
        "cancelled": "job was cancelled",
        "disk_limit": f"job used more than {limits[0]} bytes of disk (JOB_MAX_DISK) and was killed",
        "output_limit": f"job printed more than {limits[1]} bytes to one stream and was killed",
    }
    return {
        "disk_limit": reason == "disk_limit",
        "output_limit": reason == "output_limit",
        "notice": notices.get(reason),
    }


class DiskWatch:
    """The job's output sizes every tick (two stats), its whole footprint every DISK_CHECK_S or more."""

    def __init__(self, workdir: str, limits: tuple[int, int]) -> None:
        self.workdir = workdir
        self.max_disk, self.max_output = limits
        self.next_walk = 0.0

    def output_sizes(self) -> tuple[int, int]:
        return file_size(path(self.workdir, "stdout")), file_size(path(self.workdir, "stderr"))

    def check(self) -> str | None:
        """ "disk_limit" or "output_limit" once a limit is passed, else None."""
        sizes = self.output_sizes()
        if self.max_output and max(sizes) > self.max_output:
            return "output_limit"
        if not self.max_disk or time.monotonic() < self.next_walk:
            return None
        began = time.monotonic()
        used = tree_usage(path(self.workdir, WORK_DIR), MAX_WALK_ENTRIES)
        self.next_walk = time.monotonic() + max(DISK_CHECK_S, WALK_COST_FACTOR * (time.monotonic() - began))
        if used is None or used + sum(sizes) > self.max_disk:
            return "disk_limit"
        return None


def tree_usage(top: str, max_entries: int) -> int | None:
    """Bytes on disk under `top` (allocated blocks: a sparse file costs what it holds), never following
    a symlink; None when the tree has more than `max_entries` entries. Unreadable parts are opened up
    (the job's own files) or skipped."""
    total, seen, pending = 0, 0, [top]
    while pending:
        try:
            listing = open_listing(pending.pop())
        except OSError:
            continue
        with listing:
            for entry in listing:  # iterated, never listed whole: a directory may hold millions
                seen += 1
                if seen > max_entries:
                    return None
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat_mode.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
    return total


def open_listing(directory: str) -> os._ScandirIterator[str]:
    try:
        return os.scandir(directory)
    except PermissionError:
        os.chmod(directory, 0o700)  # a mode-000 directory of the job's own (as root it never gets here)
        return os.scandir(directory)


# --- own ids: a non-root wrapper's jobs get subordinate uids ---------------------------------------

SUBID_FILES = ("/etc/subuid", "/etc/subgid")
CLONE_NEWUSER = 0x10000000
UIDMAP_HINT = "install uidmap (apt-get install -y uidmap)"


class NoOwnIds(Exception):
    """The job's user namespace could not be made or mapped here: the wrapper does as without a range."""


def subid_range(file_path: str, owner: tuple[str, ...]) -> tuple[int, int] | None:
    """(first id, count) of the first line of /etc/subuid or /etc/subgid for ``owner`` (uid or name)."""
    try:
        with open(file_path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        numbers = [int(f) for f in fields[1:] if f.isdigit()]
        if len(fields) == 3 and fields[0] in owner and len(numbers) == 2 and numbers[1] > 0:
            return numbers[0], numbers[1]
    return None


class OwnIds:
    """A user namespace for this user's jobs: 0 in it is this user (so the wrapper keeps its files and
    its delegated cgroup), 1..count its subordinate ids, where the slots' uids live. Its root takes the
    root wrapper's way (drop_to_slot), and the slot's uid outside is ``start + uid inside - 1``."""

    def __init__(self, ranges: list[tuple[int, int]], tools: list[str]) -> None:
        self.ranges, self.tools = ranges, tools  # (uids, gids) as (first, count); (newuidmap, newgidmap)
        self.count = min(count for _, count in ranges)

    def inside(self, uid: int) -> int:
        """The slot's uid in the namespace: JOB_UID_BASE + n itself when the range is big enough."""
        return 1 + (uid - 1) % self.count

    def sandbox(self, sandbox: Json) -> Json:
        """The job's sandbox as the namespace's root builds it: the slot's uid there, and the workdir's
        group the node user's (0 inside), so the server still reads what the job leaves."""
        return dict(sandbox, uid=self.inside(int(sandbox["uid"])), workdir_gid=0)

    def describe(self) -> str:
        (uid, uids), (gid, gids) = self.ranges
        return f"uids {uid}-{uid + uids - 1}, gids {gid}-{gid + gids - 1}"

    def map_commands(self, pid: int) -> list[list[str]]:
        """newuidmap and newgidmap for ``pid``: 0 is our own id, 1.. the subordinate range."""
        own = (os.getuid(), os.getgid())
        return [
            [tool, str(pid), "0", str(own[i]), "1", "1", str(first), str(count)]
            for i, (tool, (first, count)) in enumerate((self.tools[j], self.ranges[j]) for j in (0, 1))
        ]


def own_ids() -> tuple[OwnIds | None, str | None]:
    """(OwnIds, None) when this non-root user's jobs can have subordinate ids here; (None, why not)."""
    tools = [find_program(name) for name in ("newuidmap", "newgidmap")]
    if None in tools:
        return None, f"newuidmap and newgidmap are not installed: {UIDMAP_HINT}"
    found = [t for t in tools if t is not None]
    if not all(os.stat(t).st_mode & stat_mode.S_ISUID and os.stat(t).st_uid == 0 for t in found):
        return None, "newuidmap or newgidmap is not setuid root: apt-get install --reinstall -y uidmap"
    owner = (str(os.getuid()), *user_name())
    ranges = [subid_range(f, owner) for f in SUBID_FILES]
    missing = [SUBID_FILES[i] for i, r in enumerate(ranges) if r is None]
    if missing:
        line = f"{owner[-1]}:100000:65536"
        return None, f"the node user has no subordinate ids: add {line!r} to {' and '.join(missing)}"
    return OwnIds([r for r in ranges if r is not None], found), None


def user_name() -> tuple[str, ...]:
    """This process's user name, as /etc/subuid may give it; () when it has no account."""
    import pwd  # only here: the daemon and clean need it, every other start does not

    try:
        return (pwd.getpwuid(os.getuid()).pw_name,)
    except KeyError:
        return ()


def in_own_ids(ids: OwnIds, body: Callable[[], Any]) -> Any:
    """``body``'s result, run in a child that is root of a user namespace mapped by ``ids`` (its
    capabilities reach the ids mapped there only). NoOwnIds (``body`` never ran) when the namespace
    could not be made or mapped; OSError with the child's traceback when ``body`` raised."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    result_r, result_w = os.pipe()
    child = os.fork()
    if child == 0:
        close_all(ready_r, go_w, result_r)
        own_ids_child(body, ready_w, go_r, result_w)
    close_all(ready_w, go_r, result_w)
    try:
        try:
            why = map_ids(ids, child, ready_r)
            os.write(go_w, b"0" if why else b"1")
        finally:
            os.close(go_w)  # without a b"1" before it, the child ends and ``body`` never runs
        data = read_to_end(result_r)
    finally:
        close_all(ready_r, result_r)
        os.waitpid(child, 0)
    if why is not None:
        raise NoOwnIds(why)
    outcome = json.loads(data.decode("utf-8")) if data else {"error": "the child ended without a result"}
    if "error" in outcome:
        raise OSError(f"in the job's user namespace: {outcome['error']}")
    return outcome["result"]


def own_ids_child(body: Callable[[], Any], ready_w: int, go_r: int, result_w: int) -> None:
    """The forked child: unshare, wait for the maps, run ``body``, send its result; never returns."""
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
        os.write(ready_w, b"1")
        if os.read(go_r, 1) == b"1":
            os.write(result_w, json.dumps({"result": body()}).encode("utf-8"))
    except BaseException:
        import traceback

        os.write(result_w, json.dumps({"error": traceback.format_exc()}).encode("utf-8"))
    finally:
        os._exit(0)


def map_ids(ids: OwnIds, pid: int, ready_r: int) -> str | None:
    """Write the child's uid and gid maps once it has unshared; None, or why that failed."""
    if os.read(ready_r, 1) != b"1":
        return "this node cannot make a user namespace (unshare failed)"
    for argv in ids.map_commands(pid):
        try:
            done = subprocess.run(argv, capture_output=True, env={"PATH": DEFAULT_PATH}, stdin=subprocess.DEVNULL)
        except OSError as e:
            return f"{argv[0]}: {e}"
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            return f"{os.path.basename(argv[0])} failed: {said[0]}"
    return None


def close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def read_to_end(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# --- subcommands -----------------------------------------------------------------------------------


def emit(obj: Json) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Wakeup:
    """A pipe from the daemon to the launcher that spawned it: the daemon writes a byte after each record
    it writes (started.json, status.json), so the launcher's waits for them end then, not at their next
    poll. A launcher without one (a later `follow`), or whose daemon is gone (end of file), polls."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # a full pipe already holds a wake: never block the daemon

    def close_writer(self) -> None:
        """In the launcher once the daemon is spawned (or none will be): then end of file means it is gone."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def notify(self) -> None:
        try:  # noqa: SIM105 - see signal_group
            os.write(self.write_fd, b".")
        except OSError:  # full (a wake is pending), or the launcher has gone
            pass

    def wait(self, seconds: float) -> None:
        if self.read_fd < 0:
            time.sleep(seconds)
        elif select.select([self.read_fd], [], [], seconds)[0] and not os.read(self.read_fd, 4096):
            os.close(self.read_fd)  # every daemon's end is closed: poll from now on
            self.read_fd = -1


LAUNCHER_WAKEUP: list[Wakeup] = []  # in the daemon only: the pipe to its launcher (write_json_atomic)


def start_once(workdir: str, wakeup: Wakeup | None = None) -> Json | None:
    """started.json, starting the job first if nobody has; None if it never started."""
    started = read_json(path(workdir, "started.json"))
    if started is None and claim(workdir):
        spawn_daemon(workdir, prepare_cgroup(workdir), EARLY_WARMER, wakeup)
    if wakeup is not None:  # only a daemon of ours holds the other end now (if any does)
        wakeup.close_writer()
    if started is None:
        started = wait_for_start(workdir, wakeup)
    if EARLY_WARMER is not None:  # the job has joined its cgroup by now, or never will
        EARLY_WARMER.stopped = True
    return started


def cmd_launch(workdir: str) -> int:
    """Prints started.json (exit 0); a job that never started prints status.json (exit 3)."""
    started = start_once(workdir, Wakeup())
    if started is not None:
        emit(started)
        return 0
    status = read_json(path(workdir, "status.json"))
    if status is not None:
        emit(status)
        return 3
    emit({"error": f"the job did not start within {LAUNCH_WAIT_S:g} s"})
    return 1


def wait_for_start(workdir: str, wakeup: Wakeup | None = None) -> Json | None:
    deadline = time.monotonic() + LAUNCH_WAIT_S
    pause = time.sleep if wakeup is None else wakeup.wait
    while time.monotonic() < deadline:
        started = read_json(path(workdir, "started.json"))
        if started is not None or os.path.exists(path(workdir, "status.json")):
            return started
        pause(0.01)
    return None


def wrapper_alive(started: Json) -> bool:
    return pid_alive(started["wrapper_pid"], started.get("wrapper_start_ticks"))


def cmd_cancel(workdir: str) -> int:
    """Ask the daemon to kill the job; do it ourselves if the daemon is dead. Prints status.json."""
    append_text(path(workdir, "cancel"), "")
    if claim(workdir):  # nobody launched it, and now nobody will
        write_json_atomic(path(workdir, "status.json"), status_record(None, cancelled=True))
    spec = read_json(path(workdir, "job.json")) or {}
    grace_s = float(spec.get("grace_s", 5.0))
    deadline = time.monotonic() + grace_s + CONFIRM_GONE_S + 2.0
    while time.monotonic() < deadline:
        status = read_json(path(workdir, "status.json"))
        if status is not None:
            emit(status)
            return 0
        started = read_json(path(workdir, "started.json"))
        if started is not None and not wrapper_alive(started):
            cancel_orphan(workdir, started, grace_s)
            continue
        time.sleep(POLL_S)
    emit({"error": f"the job did not stop within {grace_s + CONFIRM_GONE_S + 2.0:g} s"})
    return 1


def cancel_orphan(workdir: str, started: Json, grace_s: float) -> None:
    """The daemon died with the job running: kill the group; its exit status is lost with the daemon."""
    if os.path.exists(path(workdir, "status.json")):  # it finished just before dying
        return
    gone = kill_job(JobProcesses.of_started(started), grace_s)
    record = status_record(
        started["started_at"],
        cancelled=True,
        group_gone=gone,
        error="the wrapper had died; the exit status is unknown",
        notice="job was cancelled",
    )
    write_json_atomic(path(workdir, "status.json"), record)


def job_state(workdir: str) -> Json:
    status = read_json(path(workdir, "status.json"))
    started = read_json(path(workdir, "started.json"))
    if status is None and started is not None and not wrapper_alive(started):
        status = read_json(path(workdir, "status.json"))  # the daemon may have finished meanwhile
        state = "finished" if status is not None else "lost"
    elif status is not None:
        state = "finished"
    else:
        state = "running" if started is not None else "not_started"
    return {
        "state": state,
        "started": started,
        "status": status,
        "stdout_size": file_size(path(workdir, "stdout")),
        "stderr_size": file_size(path(workdir, "stderr")),
    }


def file_size(file_path: str) -> int:
    try:
        return os.path.getsize(file_path)
    except OSError:
        return 0


def cmd_status(workdir: str) -> int:
    emit(job_state(workdir))
    return 0


class Follower:
    """Streams the output files from given offsets as frames; files only grow, so offsets are enough."""

    def __init__(self, workdir: str, offsets: tuple[int, int], out: BinaryIO) -> None:
        self.workdir = workdir
        self.offsets = {STDOUT_FRAME: offsets[0], STDERR_FRAME: offsets[1]}
        self.files: dict[int, BinaryIO] = {}
        self.out = out

    def frame(self, kind: int, payload: bytes) -> None:
        self.out.write(struct.pack(">BI", kind, len(payload)))
        self.out.write(payload)

    def pump(self) -> bool:
        """One bounded read per stream; True when anything was sent."""
        sent = False
        for kind, name in ((STDOUT_FRAME, "stdout"), (STDERR_FRAME, "stderr")):
            f = self.files.get(kind)
            if f is None:
                try:
                    f = self.files[kind] = open(path(self.workdir, name), "rb")  # noqa: SIM115 - held for the run
                except FileNotFoundError:
                    continue
            f.seek(self.offsets[kind])
            data = f.read(CHUNK)
            if data:
                self.frame(kind, data)
                self.offsets[kind] += len(data)
                sent = True
        self.out.flush()
        return sent

    def drain(self) -> None:
        while self.pump():
            pass


def lost_reason(workdir: str) -> str | None:
    started = read_json(path(workdir, "started.json"))
    if started is not None:
        if wrapper_alive(started):
            return None
        return f"the wrapper (pid {started['wrapper_pid']}) is gone and left no exit status"
    try:
        launched_at = os.path.getmtime(path(workdir, "launched"))
    except OSError:
        return "the job was never launched"
    if time.time() - launched_at > LAUNCH_WAIT_S:
        return "the launch never started the job"
    return None


def cmd_run(workdir: str, out_offset: int, err_offset: int) -> int:
    """``launch`` then ``follow`` in one process (one round trip, one interpreter start): a STARTED
    frame with started.json first (none if the job never started), then what ``follow`` sends."""
    wakeup = Wakeup()
    started = start_once(workdir, wakeup)
    if started is not None:
        out = sys.stdout.buffer
        payload = json.dumps(started, separators=(",", ":")).encode("utf-8")
        out.write(struct.pack(">BI", STARTED_FRAME, len(payload)) + payload)
        out.flush()
    return cmd_follow(workdir, out_offset, err_offset, wakeup)


def cmd_follow(workdir: str, out_offset: int, err_offset: int, wakeup: Wakeup | None = None) -> int:
    follower = Follower(workdir, (out_offset, err_offset), sys.stdout.buffer)
    last_sent = time.monotonic()
    pause = time.sleep if wakeup is None else wakeup.wait
    while True:
        # Read status first: once it exists the job's group is gone, so the drain after it is complete.
        status = read_bytes(path(workdir, "status.json"))
        if status is not None:
            follower.drain()
            follower.frame(STATUS_FRAME, status)
            follower.out.flush()
            return 0
        if follower.pump():
            last_sent = time.monotonic()
            continue
        reason = lost_reason(workdir)
        if reason is not None and not os.path.exists(path(workdir, "status.json")):
            follower.drain()
            follower.frame(LOST_FRAME, json.dumps({"reason": reason}).encode("utf-8"))
            follower.out.flush()
            return 0
        if time.monotonic() - last_sent >= HEARTBEAT_S:
            follower.frame(HEARTBEAT_FRAME, b"")
            follower.out.flush()
            last_sent = time.monotonic()
        pause(POLL_S)


# --- clean-up --------------------------------------------------------------------------------------

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def open_dir(name: str, dir_fd: int) -> int:
    """A directory below `dir_fd`, opened up first if its mode keeps its owner out (a job's mode 000)."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    if os.fstat(fd).st_mode & 0o700 != 0o700:
        os.fchmod(fd, 0o700)  # unlinking in it needs write and search
    return fd


def next_subdir(fd: int) -> str | None:
    """Unlink every non-directory in the open directory; the name of one subdirectory, or None."""
    with os.scandir(fd) as listing:
        for entry in listing:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            try:  # noqa: SIM105 - see signal_group
                os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                pass
    return None


def remove_tree(top: str) -> bool:
    """Remove `top` whatever the job made of it: iterative (a tree 100 000 deep needs no recursion and
    one descriptor at a time), relative to open directories (never following a symlink), chmod-ing
    directories the job closed. True when `top` is gone."""
    top = os.path.abspath(top)
    try:
        if not stat_mode.S_ISDIR(os.lstat(top).st_mode):
            os.unlink(top)
            return True
    except FileNotFoundError:
        return True
    parent = os.open(os.path.dirname(top) or "/", DIR_FLAGS)
    fd = None
    try:
        fd, names = open_dir(os.path.basename(top), parent), [os.path.basename(top)]
        while names:
            assert fd is not None  # held while any directory of the tree is still to remove
            child = next_subdir(fd)
            if child is not None:
                inner = open_dir(child, fd)
                os.close(fd)
                fd = inner
                names.append(child)
                continue
            # Empty now: step up (by "..", the tree is the dead job's and holds still) and remove it.
            up = os.open("..", DIR_FLAGS, dir_fd=fd) if len(names) > 1 else parent
            os.close(fd)
            fd = up if up != parent else None
            os.rmdir(names.pop(), dir_fd=up)
    finally:
        if fd is not None:
            os.close(fd)
        os.close(parent)
    return not os.path.lexists(top)


def cmd_clean(target: str) -> int:
    """Remove a job's directory (control files and workdir) and whatever is left of its cgroup; exit 0
    once the directory is gone. A non-root wrapper with subordinate ids removes it as root of such a
    user namespace: the job's files are owned by ids mapped there."""
    spec = read_json(path(target, "job.json")) or {}  # read first: it names the job's cgroup
    ids = own_ids()[0] if os.geteuid() != 0 else None
    gone = None
    if ids is not None:
        with contextlib.suppress(NoOwnIds):  # no namespace after all: removed as this user, as far as it can
            gone = in_own_ids(ids, lambda: remove_tree(target))
    if gone is None:
        gone = remove_tree(target)
    discard_cgroup(spec, target)
    return 0 if gone else 1


def remove_job_tree(target: str) -> bool:
    """``remove_tree`` of a job's directory, and whatever is left of its cgroup (the local runner's
    clean-up, in the server's own process)."""
    spec = read_json(path(target, "job.json")) or {}
    gone = remove_tree(target)
    discard_cgroup(spec, target)
    return gone


def discard_cgroup(spec: Json, workdir: str) -> None:
    """A daemon that died (killed, or its node rebooted mid-job) never removed the job's cgroup: an
    empty one goes with the job's directory, so leftovers never pile up under the cgroup parent."""
    resources = spec.get("resources") or {}
    if not isinstance(resources, dict) or not resources.get("cgroups"):
        return
    # Not removable now (a delegated parent gone, a process still inside): a later clean tries again.
    with contextlib.suppress(CgroupUnavailable, OSError):
        named_cgroup(resources, workdir).discard()


def cmd_probe(root: str, uid: int, cgroup_parent: str | None = None) -> int:
    """Can this node sandbox a job? Builds one around `true`, as a job's would be (in a cgroup below
    ``cgroup_parent`` when given). Prints the verdict."""
    sandbox = {"mode": "bwrap", "network": "none", "uid": uid}
    workdir = path(path(root, "probe"), WORK_DIR)
    verdict: Json = {"as_root": os.geteuid() == 0, "own_ids": None, "own_ids_off": None}
    ids, why = (None, None) if verdict["as_root"] else own_ids()
    if ids is not None:
        try:  # as a job's daemon would build it
            problem = in_own_ids(ids, lambda: sandbox_problem(workdir, ids.sandbox(sandbox), cgroup_parent))
            verdict.update(ok=problem is None, reason=problem, own_ids=ids.describe())
            emit(verdict)
            return 0
        except NoOwnIds as e:
            why = str(e)
    problem = sandbox_problem(workdir, sandbox, cgroup_parent)
    emit(dict(verdict, ok=problem is None, reason=problem, own_ids_off=why))
    return 0


USAGE = (
    "usage: wrapper.py {launch|cancel|status|clean} DIR | wrapper.py {follow|run} DIR OUT_OFFSET ERR_OFFSET"
    " | wrapper.py probe ROOT UID [CGROUP_PARENT]\n"
)
ARGC = {"follow": (4,), "run": (4,), "probe": (3, 4)}


def main(argv: list[str]) -> int:
    commands: dict[str, Callable[..., int]] = {
        "launch": cmd_launch,
        "cancel": cmd_cancel,
        "status": cmd_status,
        "follow": cmd_follow,
        "run": cmd_run,
        "probe": cmd_probe,
        "clean": cmd_clean,
    }
    if len(argv) < 2 or argv[0] not in commands or len(argv) not in ARGC.get(argv[0], (2,)):
        sys.stderr.write(USAGE)
        return 2
    workdir = os.path.abspath(argv[1])
    try:
        numbers = [int(a) for a in (argv[2:3] if argv[0] == "probe" else argv[2:])]
        if any(a < 0 for a in numbers):
            raise ValueError("offsets must not be negative")
        texts = argv[3:] if argv[0] == "probe" else []  # the probe's cgroup parent
        return commands[argv[0]](workdir, *numbers, *texts)
    except BrokenPipeError:
        # The reader went away; send what is still buffered nowhere rather than fail again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        return 1
    except (OSError, ValueError) as e:
        sys.stderr.write(f"gpuledger wrapper: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
