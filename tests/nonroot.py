"""The test server run as an ordinary user, as the admin guide's non-root install runs it.

``server_user`` makes the account (``gpuledger-test``, with ``useradd`` if missing, removed at the end
if it made it); ``owned_dir`` is a directory in /tmp that account owns and can reach (pytest's own tmp
is root's, 0700); ``delegated_cgroup`` gives it a cgroup v1 subtree under each job controller, chowned
to it, as docs/admin-guide.md ("Resource limits") tells an admin to; ``adopt`` makes a ``Server`` start
as that user on files it owns. The tests choose a mode with ``MODES`` ("root", "user").
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from server import Server

USER = "gpuledger-test"
MODES = ["root", "user"]  # who runs the server
CGROUP_V1 = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")  # the wrapper's (CGROUP_CONTROLLERS)
ACL_XATTR = "system.posix_acl_access"
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


@dataclass(frozen=True)
class ServerUser:
    name: str
    uid: int
    gid: int

    def own(self, top: Path) -> None:
        """``top`` and everything below it belong to the user."""
        for path in [top, *top.rglob("*")]:
            os.lchown(path, self.uid, self.gid)

    def become(self) -> Callable[[], None]:
        """For preexec_fn: the child drops to the user (no supplementary groups) before exec."""

        def preexec() -> None:
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)

        return preexec

    def adopt(self, server: Server) -> None:
        """The server's directory becomes the user's and the server starts as the user."""
        self.own(server.root)
        server.preexec = self.become()


@pytest.fixture(scope="session")
def server_user() -> Iterator[ServerUser]:
    if os.geteuid() != 0:
        pytest.skip("making an ordinary user for the server needs root")
    created = False
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        entry, created = pwd.getpwnam(USER), True
    user = ServerUser(USER, entry.pw_uid, entry.pw_gid)
    try:
        with python_reachable(user):
            yield user
    finally:
        if created:
            subprocess.run(["userdel", USER], check=False)


def search_acl(mode: int, uid: int) -> bytes:
    """A POSIX ACL (the kernel's xattr form) keeping ``mode`` and adding search (x) for ``uid``."""
    entries = [
        (ACL_USER_OBJ, (mode >> 6) & 7, 0xFFFFFFFF),
        (ACL_USER, 1, uid),
        (ACL_GROUP_OBJ, (mode >> 3) & 7, 0xFFFFFFFF),
        (ACL_MASK, ((mode >> 3) & 7) | 1, 0xFFFFFFFF),
        (ACL_OTHER, mode & 7, 0xFFFFFFFF),
    ]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


@contextmanager
def python_reachable(user: ServerUser) -> Iterator[None]:
    """The test interpreter lives under /root (0700, pyenv) here: give the user search (never read)
    on each closed directory above it, by an ACL entry of its own, taken away afterwards."""
    closed = []
    for directory in Path(os.path.realpath(sys.executable)).parents:
        mode = stat.S_IMODE(directory.stat().st_mode)
        if not mode & stat.S_IXOTH and ACL_XATTR not in os.listxattr(directory):
            closed.append((directory, mode))
    try:
        for directory, mode in closed:
            os.setxattr(directory, ACL_XATTR, search_acl(mode, user.uid))
        yield
    finally:
        for directory, mode in closed:
            os.removexattr(directory, ACL_XATTR)
            directory.chmod(mode)


@contextmanager
def owned_dir(user: ServerUser | None) -> Iterator[Path]:
    """A fresh 0755 directory under /tmp, the user's when given; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="gpuledger-nonroot-", dir="/tmp"))  # reachable by the user
    base.chmod(0o755)
    if user is not None:
        os.chown(base, user.uid, user.gid)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def delegated_cgroup(user: ServerUser, parent: str) -> Iterator[str]:
    """``parent/jobs`` under each v1 controller, the directory and its cgroup.procs/tasks chowned to
    the user (what delegation means on v1); the JOB_CGROUP_PARENT to give its server. Removed after."""
    if not (CGROUP_V1 / "memory" / "memory.limit_in_bytes").exists():
        pytest.skip("needs a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    made: list[Path] = []  # children before their parents, once reversed
    try:
        for controller in CONTROLLERS:
            directory = CGROUP_V1 / controller / parent / "jobs"
            if not directory.parent.exists():
                directory.parent.mkdir()
                made.append(directory.parent)
            directory.mkdir()
            made.append(directory)
            for path in (directory, directory / "cgroup.procs", directory / "tasks"):
                os.chown(path, user.uid, user.gid)
        yield f"{parent}/jobs"
    finally:
        for directory in reversed(made):
            remove_cgroup_tree(directory)


def remove_cgroup_tree(top: Path) -> None:
    """Children first; whatever still runs in it (nothing should) goes back to the parent cgroup."""
    if not top.exists():
        return
    for directory in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), top]:
        for pid in (directory / "cgroup.procs").read_text().split():
            with suppress(OSError):  # it just ended
                (top.parent / "cgroup.procs").write_text(pid)
        directory.rmdir()
