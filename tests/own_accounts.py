"""Accounts with subordinate ids for the own-ids tests (tests/test_own_ids*.py), one set per xdist worker.

Each worker makes its own accounts and ranges (``gpuledger-ids-gw0``, ...): two workers never edit the
same /etc/subuid line, and no other module's server user (``gpuledger-test``) ever gets a range, so
their jobs run as they expect. The test interpreter lives under /root (0700): an account gets search
on the closed directories above it by an ACL entry of its own, added to and taken from whatever ACL
is there (another worker's, tests/nonroot.py's), never replacing it.
"""

from __future__ import annotations

import os
import pwd
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nonroot import ACL_GROUP_OBJ, ACL_MASK, ACL_USER, ACL_XATTR, ServerUser, search_acl

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_INDEX = int(WORKER[2:]) if WORKER[2:].isdigit() else 0
COUNT = 65536
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
ACL_GROUP = 0x08
Entry = tuple[int, int, int]  # (tag, permissions, id) of a POSIX ACL entry


def first_id(kind: int) -> int:
    """The first id of this worker's range number ``kind`` (ranges never overlap)."""
    return 500000 + (WORKER_INDEX * 4 + kind) * 100000


@contextmanager
def account(role: str, *, login: bool = False, reach: tuple[Path, ...] = ()) -> Iterator[ServerUser]:
    """A system account of this worker's (with a login shell and an unlocked password when ``login``:
    sshd without PAM refuses a locked one even for a key) that can search its way to the interpreter
    and to ``reach``; removed afterwards, with its home and its /etc/subuid lines."""
    name = f"gpuledger-{role}-{WORKER}"
    subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)  # a crashed run's
    home = ["--create-home", "--shell", "/bin/bash"] if login else ["--no-create-home", "--shell", "/usr/sbin/nologin"]
    subprocess.run(["useradd", "--system", *home, name], check=True)
    try:
        if login:
            subprocess.run(["usermod", "-p", "*", name], check=True)
        entry = pwd.getpwnam(name)
        user = ServerUser(name, entry.pw_uid, entry.pw_gid)
        with searchable_by(user, Path(os.path.realpath(sys.executable)), *reach):
            yield user
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


@contextmanager
def subordinate_ids(user: ServerUser, first: int) -> Iterator[range]:
    """A line for ``user`` in /etc/subuid and /etc/subgid, as an admin adds it; taken out afterwards."""
    line = f"{user.name}:{first}:{COUNT}\n"
    for path in SUBID_FILES:
        with path.open("a") as f:
            f.write(line)
    try:
        yield range(first, first + COUNT)
    finally:
        for path in SUBID_FILES:
            path.write_text("".join(kept for kept in path.read_text().splitlines(True) if kept != line))


@contextmanager
def searchable_by(user: ServerUser, *targets: Path) -> Iterator[None]:
    """Search (never read) for ``user`` on each closed directory above ``targets``."""
    closed = sorted({d for t in targets for d in t.parents if not d.stat().st_mode & stat.S_IXOTH})
    try:
        for directory in closed:
            add_search(directory, user.uid)
        yield
    finally:
        for directory in closed:
            drop_search(directory, user.uid)


def entries_of(directory: Path) -> list[Entry] | None:
    if ACL_XATTR not in os.listxattr(directory):
        return None
    acl = os.getxattr(directory, ACL_XATTR)
    return [struct.unpack_from("<HHI", acl, offset) for offset in range(4, len(acl), 8)]


def write_entries(directory: Path, entries: list[Entry]) -> None:
    """The kernel wants them ordered by tag, then id."""
    ordered = sorted(entries, key=lambda e: (e[0], e[2]))
    os.setxattr(directory, ACL_XATTR, struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in ordered))


def add_search(directory: Path, uid: int) -> None:
    entries = entries_of(directory)
    if entries is None:
        os.setxattr(directory, ACL_XATTR, search_acl(stat.S_IMODE(directory.stat().st_mode), uid))
        return
    entries = [
        (tag, perm | 1 if tag == ACL_MASK else perm, i) for tag, perm, i in entries if (tag, i) != (ACL_USER, uid)
    ]
    write_entries(directory, [*entries, (ACL_USER, 1, uid)])


def drop_search(directory: Path, uid: int) -> None:
    """Take our entry out; with no named entry left, the ACL goes and the mode's group bits are the
    owning group's own again (an ACL's mask stands in for them)."""
    entries = [e for e in entries_of(directory) or [] if (e[0], e[2]) != (ACL_USER, uid)]
    if any(tag in (ACL_USER, ACL_GROUP) for tag, _, _ in entries):
        write_entries(directory, entries)
        return
    group = next((perm for tag, perm, _ in entries if tag == ACL_GROUP_OBJ), 0)
    if ACL_XATTR in os.listxattr(directory):
        os.removexattr(directory, ACL_XATTR)
    mode = stat.S_IMODE(directory.stat().st_mode)
    directory.chmod((mode & ~0o070) | group << 3)


def sweep_removes_leftover(server: Any, leftover: Path, user: ServerUser, uid: int, timeout: float) -> None:
    """Plant a finished job's leftover at ``leftover``: its control directory the node user's, its
    ``work`` files owned by the subordinate ``uid`` behind mode-000 directories (what ``rm -rf`` as the
    node user cannot remove); restart ``server`` and wait until its start-up sweep has removed it."""
    inner = leftover / "work" / "closed" / "inner"
    inner.mkdir(parents=True)
    (inner / "data").write_text("the job's own\n")
    user.own(leftover)
    for path in [leftover / "work", *(leftover / "work").rglob("*")]:
        os.lchown(path, uid, user.gid)
    for directory in (inner, inner.parent):
        directory.chmod(0)
    server.stop()
    server.start()
    deadline = time.monotonic() + timeout
    while leftover.exists():
        assert time.monotonic() < deadline, "the leftover is still there"
        time.sleep(0.05)
