"""Test-side pieces of the wrapper protocol: a workdir laid out as the runner would, the `launch` and
`follow` command lines (the runner itself uses `run`), frame encoding, and the processes of a sandbox."""

from __future__ import annotations

import os
import shlex
import struct
import sys
from pathlib import Path

from executors.protocol import (
    JOB_SPEC_NAME,
    SECCOMP_NAME,
    SOLUTION_NAME,
    WORK_NAME,
    WRAPPER_NAME,
    WRAPPER_SOURCE,
    FrameKind,
    Started,
)
from executors.seccomp import seccomp_program

PY = sys.executable


def prepare_workdir(path: Path, solution_bytes: bytes, job_spec: bytes) -> None:
    """A control directory with the wrapper, its filter and job.json, and ``work/`` with the solution."""
    (path / WORK_NAME).mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    (path / WRAPPER_NAME).write_bytes(WRAPPER_SOURCE)
    (path / SECCOMP_NAME).write_bytes(seccomp_program())
    (path / JOB_SPEC_NAME).write_bytes(job_spec)
    (path / WORK_NAME / SOLUTION_NAME).write_bytes(solution_bytes)


def _wrapper(python: str, workdir: Path, *args: str) -> str:
    return shlex.join([python, "-I", "-S", str(workdir / WRAPPER_NAME), *args])


def launch_command(python: str, workdir: Path) -> str:
    return _wrapper(python, workdir, "launch", str(workdir))


def follow_command(python: str, workdir: Path, out_offset: int, err_offset: int) -> str:
    return _wrapper(python, workdir, "follow", str(workdir), str(out_offset), str(err_offset))


def encode_frame(kind: FrameKind, payload: bytes) -> bytes:
    return struct.pack(">BI", kind, len(payload)) + payload


def pid_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def sandbox_members(started: Started) -> list[int]:
    """Host pids of every process in the job's sandbox (its PID namespace), init included."""
    assert started.sandbox_pid is not None, "the job did not run in a sandbox"
    namespace = pid_namespace(started.sandbox_pid)
    if namespace is None:
        return []
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and pid_namespace(name) == namespace]


def processes_named(marker: str) -> list[int]:
    """Host pids of live processes whose command line holds ``marker`` (e.g. set with `exec -a`)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(name))
    return found
