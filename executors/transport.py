"""Where a node's commands run: the one interface the runner needs, and its local implementation.

The SSH transport (``executors.ssh.transport``) implements the same four calls over asyncssh, so
the job lifecycle in ``executors.runner`` is written once for both.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shlex
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from executors.errors import CommandTimedOut, JobFileUnreadable, RemoteCommandFailed
from executors.local_process import run_local, stream_local

# The same code as `wrapper.py clean` on a node (the wrapper is stdlib-only and untyped: a module object).
_wrapper = importlib.import_module("executors.wrapper")
_remove_tree: Callable[[str], bool] = _wrapper.remove_job_tree  # and the job's cgroup, if a dead daemon left it


class Transport(Protocol):
    """Runs wrapper-protocol commands and moves files on one node."""

    node: str
    python: str

    async def put_files(self, workdir: str, files: dict[str, bytes]) -> None: ...

    async def run(self, cmd: str, *, timeout: float) -> tuple[int, bytes, bytes]: ...

    def stream(self, cmd: str) -> AsyncIterator[bytes]: ...

    async def fetch(self, path: str, max_bytes: int) -> tuple[bytes, bool] | None: ...

    async def remove_tree(self, path: str) -> None: ...

    async def probe(self) -> None: ...


class LocalTransport:
    """Commands as subprocesses of the server host (the embedded default runner)."""

    def __init__(self, node: str, python: str = "python3") -> None:
        self.node = node
        self.python = python

    async def put_files(self, workdir: str, files: dict[str, bytes]) -> None:
        def write() -> None:
            root = Path(workdir)
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name, data in files.items():
                (root / name).write_bytes(data)

        await asyncio.to_thread(write)

    async def run(self, cmd: str, *, timeout: float) -> tuple[int, bytes, bytes]:
        try:
            return await run_local(cmd, timeout)
        except TimeoutError as e:
            raise CommandTimedOut(f"{cmd!r} did not finish within {timeout} s") from e

    async def stream(self, cmd: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream_local(cmd):
                yield chunk
        except subprocess.CalledProcessError as e:
            raise RemoteCommandFailed(cmd, e.returncode, e.stderr or b"") from e

    async def fetch(self, path: str, max_bytes: int) -> tuple[bytes, bool] | None:
        """The file's first ``max_bytes`` bytes and whether it was cut, or None when it is missing.
        Raises ``JobFileUnreadable`` when it is there but not a regular file that can be read."""
        return await asyncio.to_thread(read_job_file, path, max_bytes)

    async def remove_tree(self, path: str) -> None:
        """The wrapper's own ``clean`` (deep, mode-000, huge trees), in a thread: OSError if it stays.
        What a non-root server cannot remove itself (a job's files, owned by subordinate ids) the
        wrapper's ``clean`` removes from a user namespace, which this threaded process cannot enter."""
        try:
            if await asyncio.to_thread(_remove_tree, path):
                return
        except OSError:
            if os.geteuid() == 0:
                raise
        code, _, err = await self.run(_clean_command(self.python, path), timeout=3600)
        if code != 0:
            raise OSError(f"{path} is still there after clean-up: {err.decode(errors='replace').strip()}")

    async def probe(self) -> None:
        return None


def _clean_command(python: str, path: str) -> str:
    """The wrapper's ``clean`` from the server's own copy (the job directory's may be gone already)."""
    return shlex.join([python, "-I", "-S", str(_wrapper.__file__), "clean", path])


def read_job_file(path: str, max_bytes: int) -> tuple[bytes, bool] | None:
    """A file the job wrote, which it may have made a symlink (to the ledger), a FIFO, a socket or a
    directory: a regular file only, never following a link, never blocking on a pipe."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # ELOOP (a symlink), ENXIO (a socket), EACCES, ...
        raise JobFileUnreadable(path, e.strerror or str(e)) from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory itself
        os.close(fd)
        raise JobFileUnreadable(path, "not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as e:
            raise JobFileUnreadable(path, e.strerror or str(e)) from e
    return data[:max_bytes], len(data) > max_bytes
