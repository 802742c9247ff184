"""Real OpenSSH ``sshd`` processes on loopback: a jump host and two GPU nodes for integration tests.

Fixtures: ``ssh_cluster`` (session-wide) and ``healthy_ssh_cluster`` (the same cluster, put back in
order after each test: every sshd running with its original host key). Register with
``pytest_plugins = ["sshd"]``. With ``GPULEDGER_REQUIRE_SSHD=1`` a missing sshd fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from ledger.store.settings import NodeSpec, Settings, from_flat

SSHD = "/usr/sbin/sshd"
LOOPBACK = "127.0.0.1"
JUMP = "jump"
NODE_NAMES = ("node-0", "node-1")
START_TIMEOUT_S = 10.0


class Endpoint(NamedTuple):
    host: str
    port: int


class NodeAddress(NamedTuple):
    name: str
    host: str
    port: int


class Sshd:
    """One sshd: its config, its host key, and the running listener process."""

    def __init__(self, root: Path, name: str, port: int, authorized_keys: Path, *, forwarding: bool) -> None:
        self.name, self.port = name, port
        self.dir = root / name
        self.dir.mkdir()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.original_key = self.dir / "original_host_key"
        self.log = self.dir / "sshd.log"
        self.config = self.dir / "sshd_config"
        self.process: subprocess.Popen[bytes] | None = None
        _keygen(self.host_key, comment=f"{name}-host")
        shutil.copy2(self.host_key, self.original_key)
        self.config.write_text(_config(self, authorized_keys, forwarding=forwarding))

    def public_key(self) -> str:
        """The host key's public half, ``type base64`` without the comment."""
        return " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])

    def start(self) -> None:
        if self.process is not None:
            return
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_listening(offset)

    def _wait_listening(self, offset: int) -> None:
        """Ready means sshd said so in its log; a TCP probe would itself be a connection to handle."""
        assert self.process is not None
        banner = f"Server listening on {LOOPBACK} port {self.port}".encode()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.log.open("rb") as log:
                log.seek(offset)
                if banner in log.read():
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd {self.name} did not start:\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        """Kill the listener and every per-connection sshd it forked, so live sessions drop at once.

        Per-connection children call setsid(), so a process-group kill would miss them; they are found
        by walking the parent links instead. Only sshd processes die: commands the sessions started
        (a job launched with setsid) live on, as they would through a network outage.
        """
        if self.process is None:
            return
        _kill_sshd_tree(self.process.pid)
        self.process.wait(timeout=START_TIMEOUT_S)
        self.process = None

    def replace_host_key(self, source: Path | None) -> None:
        """Swap in ``source`` (or a fresh key when None); sshd reads host keys only when it starts."""
        running = self.process is not None
        self.stop()
        for path in (self.host_key, self.host_key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        if source is None:
            _keygen(self.host_key, comment=f"{self.name}-rotated")
        else:
            shutil.copy2(source, self.host_key)
            pub = subprocess.run(["ssh-keygen", "-y", "-f", str(self.host_key)], check=True, capture_output=True).stdout
            self.host_key.with_suffix(".pub").write_bytes(pub)
        if running:
            self.start()


class SshCluster:
    """A jump host and nodes on loopback, each a real sshd on its own port; all logins are key-only."""

    def __init__(self, root: Path, node_names: tuple[str, ...] = NODE_NAMES) -> None:
        self.root = root
        self.user = getpass.getuser()
        self.key_file = root / "client_ed25519"
        _keygen(self.key_file, comment="gpuledger-test-client")
        authorized = root / "authorized_keys"
        authorized.write_text(self.key_file.with_suffix(".pub").read_text())
        names = (JUMP, *node_names)
        self.sshds = {n: Sshd(root, n, _free_port(), authorized, forwarding=n == JUMP) for n in names}
        self.remote_roots = {n: root / "remote" / n for n in node_names}
        for path in self.remote_roots.values():
            path.mkdir(parents=True)
        self.known_hosts = root / "known_hosts"
        self.write_known_hosts(self.known_hosts)

    @property
    def jump(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.sshds[JUMP].port)

    @property
    def nodes(self) -> list[NodeAddress]:
        return [NodeAddress(n, LOOPBACK, s.port) for n, s in self.sshds.items() if n != JUMP]

    def write_known_hosts(self, path: Path, *, exclude: tuple[str, ...] = ()) -> Path:
        """Pin every host's current key as ``[127.0.0.1]:PORT key``, leaving out ``exclude``."""
        lines = [f"[{LOOPBACK}]:{s.port} {s.public_key()}\n" for n, s in self.sshds.items() if n not in exclude]
        path.write_text("".join(lines))
        return path

    def start(self, name: str) -> None:
        self.sshds[name].start()

    def stop(self, name: str) -> None:
        self.sshds[name].stop()

    def rotate_host_key(self, name: str) -> None:
        """Give ``name`` a new host key (restarting it); known_hosts keeps the old one."""
        self.sshds[name].replace_host_key(None)

    def restore_host_key(self, name: str) -> None:
        self.sshds[name].replace_host_key(self.sshds[name].original_key)

    def heal(self) -> None:
        """Every sshd running with the key known_hosts pins."""
        for sshd in self.sshds.values():
            if sshd.host_key.read_bytes() != sshd.original_key.read_bytes():
                sshd.replace_host_key(sshd.original_key)
            sshd.start()

    def close(self) -> None:
        for sshd in self.sshds.values():
            sshd.stop()

    def settings(self, **overrides: Any) -> Settings:
        """Settings that reach this cluster: short keepalive and connect timeouts so tests stay quick."""
        nodes = [
            NodeSpec(name=n.name, host=n.host, port=n.port, user=self.user, container=f"gpu-node-{i}")
            for i, n in enumerate(self.nodes)
        ]
        values: dict[str, Any] = {
            "jump_host": LOOPBACK,
            "jump_port": self.jump.port,
            "jump_user": self.user,
            "gpu_user": self.user,
            "ssh_key_file": str(self.key_file),
            "ssh_known_hosts": str(self.known_hosts),
            "ssh_keepalive_s": 1.0,
            "ssh_connect_timeout_s": 5.0,
            "nodes": nodes,
            "remote_root": str(self.root / "remote"),
        }
        values.update(overrides)
        return from_flat(values)


def _keygen(path: Path, *, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def _config(sshd: Sshd, authorized_keys: Path, *, forwarding: bool) -> str:
    return f"""\
ListenAddress {LOOPBACK}
Port {sshd.port}
HostKey {sshd.host_key}
PidFile {sshd.dir / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding {"yes" if forwarding else "no"}
X11Forwarding no
PrintMotd no
PrintLastLog no
PermitUserRC no
UseDNS no
MaxStartups 100
MaxSessions 100
LogLevel INFO
Subsystem sftp internal-sftp
"""


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may contain spaces and parentheses; the fields after the last ')' do not.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _sshd_tree(root_pid: int) -> set[int]:
    children, found, todo = _children_by_parent(), set(), [root_pid]
    while todo:
        pid = todo.pop()
        if _is_sshd(pid):
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _is_sshd(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe") == SSHD
    except OSError:
        return False


def _kill_sshd_tree(root_pid: int) -> None:
    """Freeze the tree first (SIGSTOP) so nothing forks an orphan we would miss, then kill it all."""
    frozen: set[int] = set()
    while new := _sshd_tree(root_pid) - frozen:
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen |= new
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while any(_alive(pid) for pid in frozen - {root_pid}) and time.monotonic() < deadline:
        time.sleep(0.01)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """A zombie has already closed its sockets, so it counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _require_sshd() -> None:
    missing = [tool for tool in (SSHD, "ssh-keygen") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"OpenSSH not installed ({', '.join(missing)} missing)"
    if os.environ.get("GPULEDGER_REQUIRE_SSHD") == "1":
        pytest.fail(f"{message} and GPULEDGER_REQUIRE_SSHD=1")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ssh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    """A jump host and two nodes, each a real sshd on loopback, for the whole session."""
    _require_sshd()
    # Privilege separation needs this directory; a fresh container may lack it.
    with contextlib.suppress(PermissionError):  # only root needs it, and only root may create it
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    cluster = SshCluster(tmp_path_factory.mktemp("sshd"))
    try:
        cluster.heal()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def healthy_ssh_cluster(ssh_cluster: SshCluster) -> Iterator[SshCluster]:
    """The session cluster, all up with the pinned keys before and after the test."""
    ssh_cluster.heal()
    yield ssh_cluster
    ssh_cluster.heal()
