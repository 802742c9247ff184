"""The SSH layer against real sshd processes: a jump host and two nodes on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from executors.errors import (
    AuthenticationFailed,
    HostKeyRejected,
    NodeUnreachable,
    RemoteCommandFailed,
    RemoteFileMissing,
    RemoteFileTooLarge,
)
from executors.ssh.connection import JumpConnection, NodeConnection
from ledger.store.settings import NodeSpec, Settings

if TYPE_CHECKING:
    from sshd import SshCluster

pytest_plugins = ["sshd"]
pytestmark = [pytest.mark.ssh, pytest.mark.timeout(30)]


@pytest.fixture
def cluster(healthy_ssh_cluster: SshCluster) -> SshCluster:
    return healthy_ssh_cluster


@pytest.fixture
def settings(cluster: SshCluster) -> Settings:
    return cluster.settings()


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[NodeConnection]:
    conn = NodeConnection(settings.ssh, settings.ssh.node_specs()[0])
    yield conn
    await conn.close()


def spec_of(settings: Settings, name: str) -> NodeSpec:
    return next(s for s in settings.ssh.node_specs() if s.name == name)


async def connect(settings: Settings, name: str = "node-0") -> NodeConnection:
    conn = NodeConnection(settings.ssh, spec_of(settings, name))
    await conn.ensure_connected(attempts=1)
    return conn


@pytest.mark.parametrize("name", ["node-0", "node-1"])
async def test_run_returns_output_and_exit_status_on_each_node(cluster: SshCluster, name: str) -> None:
    """Each node runs commands through the jump host and reports stdout, stderr and the exit status."""
    conn = await connect(cluster.settings(), name)
    try:
        # SSH_CONNECTION shows the session really arrived on this node's port.
        ok = await conn.run('echo "$SSH_CONNECTION"; echo oops >&2', timeout=10)
        assert ok.exit_status == 0
        assert ok.stdout.split()[-1] == str(spec_of(cluster.settings(), name).port).encode()
        assert ok.stderr == b"oops\n"
        for status in (1, 42):
            failed = await conn.run(f"exit {status}", timeout=10, check=False)
            assert failed.exit_status == status
    finally:
        await conn.close()


async def test_check_raises_remote_command_failed(node: NodeConnection) -> None:
    """With check=True a non-zero exit raises RemoteCommandFailed carrying the status and stderr."""
    with pytest.raises(RemoteCommandFailed) as caught:
        await node.run("echo broken >&2; exit 42", timeout=10)
    assert caught.value.exit_status == 42
    assert caught.value.stderr == b"broken\n"


async def test_binary_output_is_byte_exact(node: NodeConnection, cluster: SshCluster) -> None:
    """Non-UTF-8 bytes and NULs come back exactly, on stdout and stderr."""
    small = await node.run(r"printf 'a\000\377\376\200\n'; printf '\000\351' >&2", timeout=10)
    assert (small.stdout, small.stderr) == (b"a\x00\xff\xfe\x80\n", b"\x00\xe9")
    blob = bytes(range(256)) * 64 + os.urandom(256 * 1024)
    remote = cluster.remote_roots["node-0"] / "blob.bin"
    await node.put(blob, str(remote))
    assert (await node.run(f"cat {remote}", timeout=10)).stdout == blob


async def test_sftp_round_trip_creates_parents(node: NodeConnection, cluster: SshCluster, tmp_path: Path) -> None:
    """put creates missing parent directories; get returns the same bytes, from bytes or a local file."""
    root = cluster.remote_roots["node-0"] / "jobs" / "j1"
    payload = b"\x00\xffresults\n" * 1000
    await node.put(payload, str(root / "deep" / "results.jsonl"))
    assert await node.get(str(root / "deep" / "results.jsonl"), max_bytes=len(payload)) == payload
    local = tmp_path / "solution.py"
    local.write_bytes(b"print('hi')\n")
    await node.put(local, str(root / "solution.py"))
    assert await node.get(str(root / "solution.py"), max_bytes=1024) == b"print('hi')\n"


async def test_get_refuses_files_over_the_cap(node: NodeConnection, cluster: SshCluster) -> None:
    """get raises RemoteFileTooLarge past max_bytes (read_head cuts instead); a missing file is RemoteFileMissing."""
    path = str(cluster.remote_roots["node-0"] / "big.bin")
    await node.put(b"x" * 1001, path)
    with pytest.raises(RemoteFileTooLarge) as caught:
        await node.get(path, max_bytes=1000)
    assert (caught.value.size, caught.value.max_bytes) == (1001, 1000)
    assert await node.get(path, max_bytes=1001) == b"x" * 1001
    assert await node.read_head(path, max_bytes=1000) == (b"x" * 1000, True)
    assert await node.read_head(path, max_bytes=1001) == (b"x" * 1001, False)
    with pytest.raises(RemoteFileMissing):
        await node.get(str(cluster.remote_roots["node-0"] / "missing"), max_bytes=1000)


@pytest.mark.parametrize("hop", ["node-0", "jump"])
async def test_unknown_host_key_is_rejected(cluster: SshCluster, tmp_path: Path, hop: str) -> None:
    """A host missing from known_hosts is refused on either hop, naming its port; nothing is retried."""
    known = cluster.write_known_hosts(tmp_path / "known_hosts", exclude=(hop,))
    settings = cluster.settings(ssh_known_hosts=str(known))
    conn = NodeConnection(settings.ssh, spec_of(settings, "node-0"))
    started = time.monotonic()
    with pytest.raises(HostKeyRejected) as caught:
        await conn.ensure_connected(attempts=5)
    assert time.monotonic() - started < 2, "a rejected host key must not be retried"
    port = cluster.jump.port if hop == "jump" else spec_of(settings, hop).port
    assert (caught.value.port, caught.value.changed) == (port, False)
    assert f"port {port}" in str(caught.value)
    assert "not in SSH_KNOWN_HOSTS" in str(caught.value)
    await conn.close()


@pytest.mark.parametrize("content", ["", None])
async def test_empty_known_hosts_rejects_the_jump_host(
    cluster: SshCluster,
    tmp_path: Path,
    content: str | None,
) -> None:
    """An empty or missing known_hosts trusts nobody: the first hop already fails."""
    known = tmp_path / "known_hosts"
    if content is not None:
        known.write_text(content)
    conn = NodeConnection(cluster.settings(ssh_known_hosts=str(known)).ssh, spec_of(cluster.settings(), "node-1"))
    with pytest.raises(HostKeyRejected) as caught:
        await conn.ensure_connected(attempts=1)
    assert caught.value.port == cluster.jump.port


@pytest.mark.parametrize("hop", ["node-1", "jump"])
async def test_changed_host_key_is_rejected(cluster: SshCluster, hop: str) -> None:
    """A host presenting a different key than the pinned one is refused with a clear message."""
    cluster.rotate_host_key(hop)
    settings = cluster.settings()
    conn = NodeConnection(settings.ssh, spec_of(settings, "node-1"))
    with pytest.raises(HostKeyRejected) as caught:
        await conn.ensure_connected(attempts=1)
    port = cluster.jump.port if hop == "jump" else spec_of(settings, hop).port
    assert caught.value.changed
    assert f"127.0.0.1 port {port} does not match" in str(caught.value)
    await conn.close()


async def test_unauthorized_key_fails_authentication(cluster: SshCluster, tmp_path: Path) -> None:
    """A client key the hosts do not know is AuthenticationFailed, not an unreachable node."""
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    settings = cluster.settings(ssh_key_file=str(key))
    with pytest.raises(AuthenticationFailed):
        await NodeConnection(settings.ssh, spec_of(settings, "node-0")).ensure_connected(attempts=1)


async def test_stopped_node_raises_unreachable_not_an_exit_status(node: NodeConnection, cluster: SshCluster) -> None:
    """A command in flight when the node's sshd dies raises NodeUnreachable, and so do later ones."""
    await node.ensure_connected()
    in_flight = asyncio.create_task(node.run("sleep 20", timeout=25, check=False))
    await asyncio.sleep(0.3)
    cluster.stop("node-0")
    with pytest.raises(NodeUnreachable):
        await asyncio.wait_for(in_flight, 10)
    with pytest.raises(NodeUnreachable):
        await node.run("true", timeout=5, check=False)
    with pytest.raises(NodeUnreachable):
        await node.ensure_connected(attempts=2)


@pytest.mark.parametrize("host", ["node-0", "jump"])
async def test_restarted_host_reconnects(node: NodeConnection, cluster: SshCluster, host: str) -> None:
    """After the node's or the jump host's sshd restarts, ensure_connected reconnects and run works."""
    await node.ensure_connected()
    with capture_logs() as logs:
        cluster.stop(host)
        with pytest.raises(NodeUnreachable):
            await node.run("true", timeout=5)
        cluster.start(host)
        await node.ensure_connected(attempts=5)
        assert (await node.run("echo back", timeout=10)).stdout == b"back\n"
    events = [(e["event"], e.get("node")) for e in logs]
    assert ("ssh.disconnected", "node-0" if host == "node-0" else "jump") in events
    assert ("ssh.reconnect", "node-0") in events
    assert events[-1] == ("ssh.connect", "node-0")


async def test_stream_yields_output_as_it_comes(node: NodeConnection) -> None:
    """open_stream delivers each line while the command still runs, not all at the end."""
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    async for chunk in node.open_stream("for i in 1 2 3; do echo $i; sleep 0.2; done"):
        arrivals.append((time.monotonic() - started, chunk))
    assert b"".join(c for _, c in arrivals) == b"1\n2\n3\n"
    first_line_at = next(t for t, c in arrivals if b"1" in c)
    last_line_at = next(t for t, c in arrivals if b"3" in c)
    assert last_line_at - first_line_at >= 0.3


async def test_stream_reports_failure_and_can_stop_early(node: NodeConnection) -> None:
    """A stream whose command fails raises RemoteCommandFailed; leaving early closes the channel."""
    with pytest.raises(RemoteCommandFailed) as caught:
        async for _ in node.open_stream("echo partial; exit 3"):
            pass
    assert caught.value.exit_status == 3
    stream = node.open_stream("while true; do echo tick; sleep 0.05; done")
    assert b"tick" in await anext(stream)
    await asyncio.wait_for(stream.aclose(), 5)
    assert (await node.run("echo still-usable", timeout=10)).stdout == b"still-usable\n"


async def test_jump_host_runs_commands(settings: Settings) -> None:
    """JumpConnection runs a command on the jump host itself (where lxc restart would run)."""
    jump = JumpConnection(settings.ssh)
    try:
        result = await jump.run('echo "$SSH_CONNECTION"', timeout=10)
        assert result.stdout.split()[-1] == str(settings.ssh.jump_port).encode()
    finally:
        await jump.close()
