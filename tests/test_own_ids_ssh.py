"""Subordinate ids on an SSH node (loopback sshd) whose GPU_USER is an ordinary user with a range: the
job runs as a uid of it, cannot read that user's private file, and the wrapper's clean removes all it
left."""

from __future__ import annotations

import os
import pwd
import stat
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from nonroot import ACL_MASK, ACL_USER, ACL_XATTR, ServerUser, delegated_cgroup, owned_dir, search_acl
from server import Server
from sshd import SshCluster
from test_own_ids import end_all, host_uid, start_sleepers, subordinate_ids
from test_sandbox import start_server
from test_ssh_jobs import ssh_settings
from wrapper_jobs import PY

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]

NODE_USER = "gpuledger-node"
NODE_FIRST = 600000  # not overlapping the server user's range


def with_search(acl: bytes | None, mode: int, uid: int) -> bytes:
    """``acl`` (the kernel's xattr form; None: the bare ``mode``) plus search for ``uid``."""
    if acl is None:
        return search_acl(mode, uid)
    entries = [struct.unpack_from("<HHI", acl, offset) for offset in range(4, len(acl), 8)]
    entries = [(tag, perm | 1 if tag == ACL_MASK else perm, i) for tag, perm, i in entries] + [(ACL_USER, 1, uid)]
    return acl[:4] + b"".join(struct.pack("<HHI", *e) for e in sorted(entries, key=lambda e: (e[0], e[2])))


@contextmanager
def searchable_by(user: ServerUser, *targets: Path) -> Iterator[None]:
    """Search (never read) for ``user`` on each closed directory above ``targets`` (the interpreter,
    the cluster's authorized_keys, which sshd reads as the user logging in), by an ACL entry of its own
    added to any there already (the server user's); the old ACLs come back afterwards."""
    closed = {d for t in targets for d in t.parents if not d.stat().st_mode & stat.S_IXOTH}
    saved = []
    try:
        for directory in sorted(closed):
            old = os.getxattr(directory, ACL_XATTR) if ACL_XATTR in os.listxattr(directory) else None
            saved.append((directory, old, stat.S_IMODE(directory.stat().st_mode)))
            os.setxattr(directory, ACL_XATTR, with_search(old, saved[-1][2], user.uid))
        yield
    finally:
        for directory, old, mode in reversed(saved):
            if old is None:
                os.removexattr(directory, ACL_XATTR)
                directory.chmod(mode)
            else:
                os.setxattr(directory, ACL_XATTR, old)


@contextmanager
def node_account(cluster: SshCluster) -> Iterator[ServerUser]:
    """An ordinary account with a login shell and no locked password (sshd without PAM refuses a
    locked one even for a key), which can reach the test interpreter and the authorized keys."""
    subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/bash", NODE_USER], check=True)
    try:
        subprocess.run(["usermod", "-p", "*", NODE_USER], check=True)
        entry = pwd.getpwnam(NODE_USER)
        user = ServerUser(NODE_USER, entry.pw_uid, entry.pw_gid)
        python = Path(os.path.realpath(sys.executable))
        with searchable_by(user, python, cluster.root / "authorized_keys"):
            yield user
    finally:
        subprocess.run(["userdel", "--remove", NODE_USER], check=False, capture_output=True)


@pytest.fixture(scope="module")
def ssh_own_ids(
    server_user: ServerUser, ssh_cluster: SshCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path, range, Path]]:
    """A root server whose SSH nodes log in as an ordinary user with a range (and a delegated cgroup),
    binding a directory with a mode-0600 file of that user. (server, that file, range, jobs root)"""
    with ExitStack() as stack:
        user = stack.enter_context(node_account(ssh_cluster))
        ids = stack.enter_context(subordinate_ids(user, NODE_FIRST))
        base = stack.enter_context(owned_dir(user))
        (base / "shared").mkdir()
        secret = base / "shared" / "id_ed25519"
        secret.write_text("the node user's key\n")
        secret.chmod(0o600)
        (base / "remote").mkdir()
        user.own(base)
        parent = stack.enter_context(delegated_cgroup(user, f"gpuledger-ownids-ssh-{uuid.uuid4().hex[:8]}"))
        readonly = [sys.prefix, sys.base_prefix, str(secret.parent)]
        settings = ssh_settings(ssh_cluster, job_command=f"{PY} {{solution}}", job_readonly_paths=readonly)
        for name in ("code_scanner_enabled", "rate_limit_per_minute", "max_active_jobs_per_user", "endpoint_limits"):
            settings.pop(name)
        settings.update(gpu_user=user.name, remote_root=str(base / "remote"), job_cgroup_parent=parent)
        settings["nodes"] = [dict(node, user=user.name) for node in settings["nodes"]]
        server = start_server(tmp_path_factory.mktemp("ownids-ssh") / "server", **settings)
        stack.callback(server.stop)
        yield server, secret, ids, base / "remote" / "jobs"


def test_on_an_ssh_node_the_job_runs_as_a_subordinate_uid_and_is_cleaned_up(
    ssh_own_ids: tuple[Server, Path, range, Path],
) -> None:
    """On an SSH node whose GPU_USER has a range: the job runs as a uid of it, cannot read that user's
    mode-0600 file, its workdir is its uid's, and the wrapper's clean removes it (mode-000 dir too)."""
    server, secret, ids, jobs_root = ssh_own_ids
    with server.client(server.admin_token) as client:
        [(job_id, _, pid)] = start_sleepers(client, secret, 1)
        uid, owners = host_uid(pid), [p.joinpath("work").stat().st_uid for p in jobs_root.glob(f"{job_id}*")]
        [report] = end_all(client, [(job_id, "", pid)])
    assert uid in ids, uid
    assert (owners, report["secret"]) == ([uid], "PermissionError"), report
    deadline = time.monotonic() + 20
    while list(jobs_root.glob(f"{job_id}*")):
        assert time.monotonic() < deadline, list(jobs_root.glob(f"{job_id}*"))
        time.sleep(0.05)
