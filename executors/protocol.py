"""The job wrapper protocol seen from the server: file names, command lines, frames, records.

Each job has a control directory (the wrapper's files; the job never sees it) holding ``work/``, the
job's own workdir, the only place the sandboxed job can write. Everything is a shell command string
run against the control directory, so the local runner (asyncio subprocess)
and the SSH runner (asyncssh) speak it unchanged. The other side is `executors/wrapper.py`.
"""

from __future__ import annotations

import enum
import math
import os
import posixpath
import shlex
import string
import struct
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Literal, NamedTuple

import msgspec

StrPath = str | os.PathLike[str]

WRAPPER_NAME = "wrapper.py"
SECCOMP_NAME = "seccomp.bpf"  # next to the wrapper: the job's system-call filter (executors/seccomp.py)
SOLUTION_NAME = "solution.py"
JOB_SPEC_NAME = "job.json"
STDOUT_NAME = "stdout"
STDERR_NAME = "stderr"
STARTED_NAME = "started.json"
STATUS_NAME = "status.json"
CANCEL_NAME = "cancel"
GPU_NAME = "gpu.json"  # the wrapper's last nvidia-smi samples of the job's GPUs (JobSpec.gpu_sample_s)
WORK_NAME = "work"  # the job's own directory inside the control directory

# `launch` exit codes: 0 prints started.json; this one prints status.json of a job that never ran
# (cancelled before it started, or bash could not be started). Anything else is a failure.
LAUNCH_NEVER_STARTED = 3
# The wrapper's usage error: also what a node's older wrapper says to a newer command line (a probe
# with a cgroup parent), so the probe replaces it and asks again.
WRAPPER_USAGE = 2

WRAPPER_SOURCE: bytes = resources.files(__package__ or "executors").joinpath(WRAPPER_NAME).read_bytes()

PLACEHOLDERS = frozenset({"solution", "competition_id", "results", "workdir", "entrypoint", "args"})


class ProtocolError(ValueError):
    """The wrapper said something this side cannot read (bad frame header, oversized frame)."""


# --- records the wrapper writes ----------------------------------------------------------------------


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Resource limits of the sandbox (0: none); see docs/admin-guide.md."""

    max_processes: int = 0
    max_open_files: int = 0
    max_memory_bytes: int = 0


class SandboxSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How the wrapper confines the job: bwrap (or none), its network, what else it may read, its uid."""

    mode: Literal["bwrap", "none"] = "bwrap"
    network: Literal["none", "host"] = "none"
    readonly_paths: list[str] = []
    uid: int = 61000  # the slot's unprivileged uid, when the wrapper runs as root or with subordinate ids
    gpus: list[int] | None = None  # device minors: /dev/nvidia<minor> bound in; None or []: no GPU
    gpu_indices: list[int] | None = None  # nvidia-smi indices, mapped to minors by the wrapper on the node
    gpus_from_slurm: bool = False  # also bind the GPUs Slurm allocated (the batch job's environment)
    gpu_device_dir: str = "/dev"  # where the node's nvidia device nodes are (JOB_GPU_DEVICE_DIR)
    nvidia_smi: str = ""  # the node's nvidia-smi (NVIDIA_SMI); "": the one on the wrapper's PATH
    limits: Limits = Limits()


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """The job's own cgroup and the sizes derived from its memory limit (docs/admin-guide.md,
    "Resource limits"). The server decides the numbers; the wrapper, which knows the node, applies them."""

    cgroups: bool = False  # False: no cgroup of our own (JOB_CGROUPS = false, or Slurm's own cgroup)
    cgroup_parent: str = "gpuledger"  # below the cgroup root (v2) or each controller's root (v1)
    memory_bytes: int = 0  # the job's memory limit; 0: ``memory_share`` of the node's MemTotal
    memory_share: float = 0.0  # fraction of the node's MemTotal (0 with memory_bytes 0: no limit)
    tmpfs_share: float = 0.0  # /tmp and /dev/shm are each sized at this share of the memory limit
    max_pids: int = 0  # pids.max (0: none)
    cpu_weight: int = 100  # cpu.weight (v2 scale, 1-10000; cpu.shares on v1 is 10.24 times it)
    cpu_quota: float = 0.0  # CPUs the job may use at most (cpu.max); 0: no quota


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    time_limit_s: float
    grace_s: float
    env: dict[str, str] = {}
    sandbox: SandboxSpec = SandboxSpec()
    resources: Resources = Resources()
    max_disk_bytes: int = 0  # workdir + output on disk; past it the wrapper stops the job (0: no limit)
    max_output_bytes: int = 0  # per output file while the job runs; past it the job is stopped (0: none)
    gpu_sample_s: float = 0.0  # the wrapper samples the job's GPUs with nvidia-smi this often (0: it does not)


class Started(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    pgid: int
    wrapper_pid: int
    started_at: datetime
    wrapper_start_ticks: int | None = None
    sandbox_pid: int | None = None  # the sandbox's init (host pid); None without a sandbox
    sandbox_start_ticks: int | None = None


class ExitStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A job killed by signal N has signal=N and exit_code=None; otherwise exit_code is set."""

    exit_code: int | None
    signal: int | None
    ended_at: datetime
    started_at: datetime | None = None  # None: the job never started
    timed_out: bool = False
    cancelled: bool = False
    group_gone: bool = True  # False: some process of the job survived KILL (e.g. stuck in D state)
    error: str | None = None
    out_of_memory: bool = False  # the job's cgroup counted an OOM kill (not a guess from exit 137)
    memory_limit_bytes: int | None = None  # the limit the wrapper set (None: none)
    disk_limit: bool = False  # stopped for passing max_disk_bytes
    output_limit: bool = False  # stopped for passing max_output_bytes
    notice: str | None = None  # the wrapper's own word on why it stopped the job (never in its stderr)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.cancelled)


class WrapperState(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["not_started", "running", "finished", "lost"]
    started: Started | None
    status: ExitStatus | None
    stdout_size: int
    stderr_size: int


class Lost(msgspec.Struct, frozen=True, kw_only=True):
    reason: str


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """The wrapper's verdict on whether this node can build a job's sandbox."""

    ok: bool
    reason: str | None = None
    as_root: bool = False
    own_ids: str | None = None  # a non-root wrapper's jobs run as these subordinate ids...
    own_ids_off: str | None = None  # ...or, without them, as the node user: why


_started_decoder = msgspec.json.Decoder(Started)
_status_decoder = msgspec.json.Decoder(ExitStatus)
_state_decoder = msgspec.json.Decoder(WrapperState)
_lost_decoder = msgspec.json.Decoder(Lost)
_probe_decoder = msgspec.json.Decoder(Probe)


def decode_started(data: bytes) -> Started:
    return _started_decoder.decode(data)


def decode_exit_status(data: bytes) -> ExitStatus:
    return _status_decoder.decode(data)


def decode_wrapper_state(data: bytes) -> WrapperState:
    return _state_decoder.decode(data)


def decode_lost(data: bytes) -> Lost:
    return _lost_decoder.decode(data)


def decode_probe(data: bytes) -> Probe:
    return _probe_decoder.decode(data)


def job_spec_bytes(
    command: str,
    time_limit_s: float,
    grace_s: float,
    env: Mapping[str, str],
    sandbox: SandboxSpec | None = None,
    resources: Resources | None = None,
    *,
    max_disk_bytes: int = 0,
    max_output_bytes: int = 0,
    gpu_sample_s: float = 0.0,
) -> bytes:
    """The contents of job.json; rejects what the wrapper could not honour rather than let it guess."""
    if not (math.isfinite(time_limit_s) and time_limit_s > 0):
        raise ValueError(f"time_limit_s must be a positive number, not {time_limit_s!r}")
    if not (math.isfinite(grace_s) and grace_s >= 0):
        raise ValueError(f"grace_s must be a non-negative number, not {grace_s!r}")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"invalid environment variable {key!r}")
    spec = JobSpec(
        command=command,
        time_limit_s=float(time_limit_s),
        grace_s=float(grace_s),
        env=dict(env),
        sandbox=sandbox or SandboxSpec(),
        resources=resources or Resources(),
        max_disk_bytes=max_disk_bytes,
        max_output_bytes=max_output_bytes,
        gpu_sample_s=gpu_sample_s,
    )
    return msgspec.json.encode(spec)


# --- command lines -------------------------------------------------------------------------------------


def _wrapper_command(python: str, workdir: StrPath, *args: str) -> str:
    """`python` is one executable (name or path), never a shell fragment: it is quoted like the rest."""
    wd = os.fspath(workdir)
    # -I -S: the wrapper needs the standard library only, so skip site-packages, .pth hooks and the
    # environment (they cost tens of milliseconds per start, and could change what runs).
    return shlex.join([python, "-I", "-S", posixpath.join(wd, WRAPPER_NAME), *args])


def run_command(python: str, workdir: StrPath, out_offset: int, err_offset: int) -> str:
    """Launch (idempotent) and follow from the offsets, in one remote command."""
    if out_offset < 0 or err_offset < 0:
        raise ValueError("offsets must not be negative")
    return _wrapper_command(python, workdir, "run", os.fspath(workdir), str(out_offset), str(err_offset))


def cancel_command(python: str, workdir: StrPath) -> str:
    return _wrapper_command(python, workdir, "cancel", os.fspath(workdir))


def clean_command(python: str, workdir: StrPath) -> str:
    """Remove a job's directory with the wrapper's own ``clean`` (deep, mode-000 or huge trees), or
    ``rm -rf`` when the wrapper is not (or no longer) there."""
    wd = shlex.quote(os.fspath(workdir))
    wrapper = shlex.quote(posixpath.join(os.fspath(workdir), WRAPPER_NAME))
    clean = _wrapper_command(python, workdir, "clean", os.fspath(workdir))
    return f"if test -f {wrapper}; then {clean} || rm -rf -- {wd}; else rm -rf -- {wd}; fi; test ! -e {wd}"


def status_command(python: str, workdir: StrPath) -> str:
    return _wrapper_command(python, workdir, "status", os.fspath(workdir))


def probe_command(python: str, root: StrPath, uid: int, cgroup_parent: str | None = None) -> str:
    """Exit 9 when ``root`` holds no wrapper or filter yet (upload them, then ask again). With
    ``cgroup_parent`` the probe also makes (and removes) a job cgroup below it, as a job's would be."""
    wrapper = posixpath.join(os.fspath(root), WRAPPER_NAME)
    program = posixpath.join(os.fspath(root), SECCOMP_NAME)
    extra = [cgroup_parent] if cgroup_parent else []
    return f"test -f {shlex.quote(wrapper)} -a -f {shlex.quote(program)} || exit 9; " + _wrapper_command(
        python, root, "probe", os.fspath(root), str(uid), *extra
    )


def render_job_command(
    template: str,
    *,
    solution: StrPath,
    competition_id: str,
    results: StrPath,
    workdir: StrPath,
    entrypoint: StrPath | None = None,
    args: list[str] | None = None,
) -> str:
    """Fill `{solution}`, `{competition_id}`, `{results}`, `{workdir}`, `{entrypoint}` (the file that runs:
    a project's entrypoint, else the solution), each as one shell-quoted word, and `{args}` as one quoted
    word per argument (nothing when there are none).

    A placeholder must stand where a bare word can: not inside quotes or backticks, not after `$` or
    a backslash, where the shell would re-read the quoted value and user input could escape.
    """
    values = {
        "solution": os.fspath(solution),
        "competition_id": competition_id,
        "results": os.fspath(results),
        "workdir": os.fspath(workdir),
        "entrypoint": os.fspath(solution if entrypoint is None else entrypoint),
    }
    for name, value in [*values.items(), *(("args", arg) for arg in args or [])]:
        if "\0" in value:
            raise ValueError(f"{name} contains a NUL byte, which no command argument can hold")
    values["args"] = shlex.join(args or [])
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"malformed job command template {template!r}: {e}") from e
    out: list[str] = []
    state = ""
    for literal, field, spec, conversion in pieces:
        out.append(literal)
        state = _shell_state(literal, state)
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"unknown placeholder {{{field}}} in job command template {template!r}; "
                f"known: {', '.join(sorted('{' + p + '}' for p in PLACEHOLDERS))}"
            )
        if state or literal.endswith("$"):
            raise ValueError(
                f"placeholder {{{field}}} in {template!r} must stand as a bare word, "
                "outside quotes, backticks, `$` and backslashes"
            )
        out.append(values[field] if field == "args" else shlex.quote(values[field]))
    return "".join(out)


def _shell_state(text: str, state: str) -> str:
    """Quote state after `text`: "" outside, or one of ' " ` inside, or "\\" after a dangling escape."""
    escaped = state == "\\"
    state = "" if escaped else state
    for char in text:
        if escaped:
            escaped = False
        elif state == "'":
            state = "" if char == "'" else state
        elif char == "\\":
            escaped = True
        elif char == state:
            state = ""
        elif not state and char in "'\"`":
            state = char
    return "\\" if escaped and not state else state


# --- frames ------------------------------------------------------------------------------------------


class FrameKind(enum.IntEnum):
    STDOUT = 1
    STDERR = 2
    STATUS = 3  # payload: status.json; the last frame
    HEARTBEAT = 4  # empty; the job is still running
    LOST = 5  # payload: Lost JSON; no wrapper alive and no status.json; the last frame
    STARTED = 6  # payload: started.json; `run` sends it first when the job has started


class Frame(NamedTuple):
    kind: FrameKind
    payload: bytes


_HEADER = struct.Struct(">BI")
MAX_FRAME_PAYLOAD = 64 * 1024 * 1024  # the wrapper sends at most 1 MiB; anything far bigger is garbage


class FrameDecoder:
    """Incremental decoder for `follow` output: feed it reads of any size, get whole frames back."""

    def __init__(self, max_payload: int = MAX_FRAME_PAYLOAD) -> None:
        self._buffer = bytearray()
        self._max_payload = max_payload

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete frame (non-zero at EOF means truncation)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        position = 0
        while len(self._buffer) - position >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer, position)
            if kind not in FrameKind._value2member_map_:
                raise ProtocolError(f"unknown frame kind {kind}")
            if length > self._max_payload:
                raise ProtocolError(f"frame of {length} bytes exceeds the {self._max_payload} byte limit")
            end = position + _HEADER.size + length
            if end > len(self._buffer):
                break
            frames.append(Frame(FrameKind(kind), bytes(self._buffer[position + _HEADER.size : end])))
            position = end
        del self._buffer[:position]
        return frames
