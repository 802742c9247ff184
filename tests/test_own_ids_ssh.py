"""Subordinate ids on an SSH node (loopback sshd) whose GPU_USER is an ordinary user with a range: the
job runs as a uid of it, cannot read that user's private file, and the wrapper's clean removes all it
left."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from nonroot import ServerUser, delegated_cgroup, owned_dir
from own_accounts import account, first_id, subordinate_ids, sweep_removes_leftover
from server import Server
from sshd import SshCluster
from test_own_ids import end_all, host_uid, start_sleepers
from test_sandbox import start_server
from test_ssh_jobs import ssh_settings
from wrapper_jobs import PY

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def ssh_own_ids(
    server_user: ServerUser, ssh_cluster: SshCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path, range, Path, ServerUser]]:
    """A root server whose SSH nodes log in as an ordinary user with a range (and a delegated cgroup),
    binding a directory with a mode-0600 file of that user. (server, that file, range, jobs root, user)
    ``server_user`` only groups these tests with the other non-root ones."""
    with ExitStack() as stack:
        # sshd reads the cluster's authorized_keys as the user logging in
        user = stack.enter_context(account("node", login=True, reach=(ssh_cluster.root / "authorized_keys",)))
        ids = stack.enter_context(subordinate_ids(user, first_id(2)))
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
        yield server, secret, ids, base / "remote" / "jobs", user


def test_on_an_ssh_node_the_job_runs_as_a_subordinate_uid_and_is_cleaned_up(
    ssh_own_ids: tuple[Server, Path, range, Path, ServerUser],
) -> None:
    """On an SSH node whose GPU_USER has a range: the job runs as a uid of it, cannot read that user's
    mode-0600 file, its workdir is its uid's, and the wrapper's clean removes it (mode-000 dir too)."""
    server, secret, ids, jobs_root, _ = ssh_own_ids
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


def test_the_sweep_removes_a_leftover_of_subordinate_ids_whose_wrapper_is_gone(
    ssh_own_ids: tuple[Server, Path, range, Path, ServerUser],
) -> None:
    """A finished job's leftover on the node with no wrapper.py left (an earlier clean got that far), its
    files a subordinate uid's behind mode-000 directories, which ``rm -rf`` as the node user cannot
    remove: the next start's sweep puts the wrapper back and its clean removes them."""
    server, secret, ids, jobs_root, user = ssh_own_ids
    with server.client(server.admin_token) as client:
        [(job_id, marker, pid)] = start_sleepers(client, secret, 1)
        end_all(client, [(job_id, marker, pid)])
    sweep_removes_leftover(server, jobs_root / f"{job_id}.9", user, ids[5], timeout=30)
