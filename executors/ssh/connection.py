"""Persistent SSH connections to the jump host and, through it, to each GPU node (asyncssh).

Host keys are verified on both hops. Every connection-level failure becomes ``NodeUnreachable``;
a dropped session is never reported as an exit status.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import stamina
import structlog

from executors.errors import (
    AuthenticationFailed,
    CommandTimedOut,
    ExecutorError,
    HostKeyRejected,
    NodeUnreachable,
    RemoteCommandFailed,
    RemoteFileError,
    RemoteFileMissing,
    RemoteFileTooLarge,
)
from ledger.store.settings import NodeSpec, SshSettings

log = structlog.get_logger("executors.ssh.connection")

# Missed keepalives before the connection counts as dead: detection takes about 3 x SSH_KEEPALIVE_S.
KEEPALIVE_COUNT_MAX = 3
STREAM_CHUNK = 64 * 1024
# TimeoutError is an OSError; ChannelOpenError covers a jump host that cannot reach the node.
CONNECTION_ERRORS = (asyncssh.DisconnectError, asyncssh.ChannelOpenError, OSError)
SFTP_CONNECTION_ERRORS = (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """A finished remote command. ``exit_status`` is negative (-signal) if a signal killed it."""

    exit_status: int
    stdout: bytes
    stderr: bytes


class _ConnectionWatcher(asyncssh.SSHClient):
    """Logs a lost connection when it happens, not when the next command fails."""

    def __init__(self, endpoint: SshEndpoint) -> None:
        self._endpoint = endpoint
        self._established = False

    def auth_completed(self) -> None:
        self._established = True

    def connection_lost(self, exc: Exception | None) -> None:
        # A handshake that fails is reported by the connect call itself, not as a disconnect.
        if self._established and not self._endpoint.closing:
            self._endpoint.log.warning("ssh.disconnected", reason=str(exc) if exc else "closed by peer")


class SshEndpoint:
    """One persistent connection to one host; subclasses say how to open it."""

    hop = "host"

    def __init__(self, ssh: SshSettings, *, name: str, host: str, port: int, username: str) -> None:
        self.name, self.host, self.port, self.username = name, host, port, username
        self.ssh = ssh
        self.closing = False
        self.log = log.bind(node=name, hop=self.hop, host=host, port=port)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._ever_connected = False
        self._failing = False  # inside an outage: its retries log nothing more
        self._lock = asyncio.Lock()

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure_connected(self, *, attempts: int = 5, timeout: float | None = 60.0) -> None:
        """Connect if needed, retrying with exponential backoff and jitter; the last failure propagates.

        Only ``NodeUnreachable`` is retried: a rejected host key or login will not fix itself.
        """
        async for attempt in stamina.retry_context(
            on=NodeUnreachable,
            attempts=attempts,
            timeout=timeout,
            wait_initial=0.2,
            wait_max=10.0,
        ):
            with attempt:
                await self.connection()

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, opened with a single attempt if there is none."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                if self._ever_connected and not self._failing:
                    self.log.info("ssh.reconnect")
                self.closing = False
                try:
                    self._conn = await self._open()
                except ExecutorError as e:
                    # One line per state change: the first failure of an outage, not every retry.
                    if not self._failing:
                        self.log.warning("ssh.connect_failed", error=str(e))
                    self._failing = True
                    raise
                self.log.info("ssh.connect")
                self._ever_connected, self._failing = True, False
            return self._conn

    async def _open(self) -> asyncssh.SSHClientConnection:
        raise NotImplementedError

    async def _connect(self, tunnel: asyncssh.SSHClientConnection | None) -> asyncssh.SSHClientConnection:
        known_hosts = self.ssh.known_hosts
        options: dict[str, Any] = {
            # Never None: that would switch host key checking off. () is asyncssh's ~/.ssh/known_hosts.
            "known_hosts": known_hosts or (),
            # Settings are the one source of truth, so ~/.ssh/config must not redirect anything.
            "config": None,
            "connect_timeout": self.ssh.connect_timeout_s,
            "keepalive_interval": self.ssh.keepalive_s,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
        }
        if self.ssh.key_file:
            options.update(client_keys=[self.ssh.key_file], agent_path=None)
        self._require_known_hosts_file()
        try:
            conn, _ = await asyncssh.create_connection(
                lambda: _ConnectionWatcher(self),
                self.host,
                self.port,
                tunnel=tunnel,
                username=self.username,
                **options,
            )
        except asyncssh.HostKeyNotVerifiable as e:
            raise self._host_key_rejected() from e
        except asyncssh.PermissionDenied as e:
            raise AuthenticationFailed(
                f"{self.username}@{self.host} port {self.port} refused key {self.ssh.key_file}: {e}"
            ) from e
        except CONNECTION_ERRORS as e:
            raise NodeUnreachable(f"{self.hop} {self.host} port {self.port}: {_describe(e)}") from e
        return conn

    def _require_known_hosts_file(self) -> None:
        """asyncssh reads the file only after the handshake began; a missing one trusts nobody."""
        path = self.ssh.known_hosts
        if path and not Path(path).is_file():
            raise HostKeyRejected(self.host, self.port, path, changed=False)

    def _host_key_rejected(self) -> HostKeyRejected:
        path = self.ssh.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        try:
            pinned = asyncssh.read_known_hosts(path).match(self.host, self.host, self.port)[0]
        except (OSError, ValueError):
            pinned = []
        return HostKeyRejected(self.host, self.port, path, changed=bool(pinned))

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn asyncssh's connection errors into NodeUnreachable, once, at the edge."""
        try:
            yield
        except CONNECTION_ERRORS as e:
            raise NodeUnreachable(f"{self.name}: {what}: connection failed: {_describe(e)}") from e

    async def run(self, cmd: str, *, timeout: float, check: bool = True) -> RemoteResult:
        """Run ``cmd`` (a shell command line) and collect its output as bytes; for small outputs."""
        conn = await self.connection()
        with self._translated(cmd):
            process = await conn.create_process(cmd, encoding=None, stdin=asyncssh.DEVNULL)
            try:
                done = await process.wait(timeout=timeout)
            except asyncssh.TimeoutError as e:
                raise CommandTimedOut(f"{self.name}: {cmd!r} did not finish within {timeout}s") from e
            finally:
                process.close()
        if done.returncode is None:
            # The channel closed without an exit status or signal: the session died, not the command.
            raise NodeUnreachable(f"{self.name}: connection lost while running {cmd!r}")
        result = RemoteResult(done.returncode, _as_bytes(done.stdout), _as_bytes(done.stderr))
        if check and result.exit_status != 0:
            raise RemoteCommandFailed(cmd, result.exit_status, result.stderr)
        return result

    async def open_stream(self, cmd: str) -> AsyncIterator[bytes]:
        """Yield a long-running command's stdout in chunks as they arrive; stderr is discarded.

        Ends when the command exits; a non-zero exit raises RemoteCommandFailed, a dropped
        connection NodeUnreachable. Closing the iterator early closes the channel.
        """
        conn = await self.connection()
        with self._translated(cmd):
            process = await conn.create_process(
                cmd,
                encoding=None,
                stdin=asyncssh.DEVNULL,
                stderr=asyncssh.DEVNULL,
            )
            try:
                while chunk := await process.stdout.read(STREAM_CHUNK):
                    yield chunk
                await process.wait_closed()
            finally:
                process.close()
        if process.returncode is None:
            raise NodeUnreachable(f"{self.name}: connection lost while streaming {cmd!r}")
        if process.returncode != 0:
            raise RemoteCommandFailed(cmd, process.returncode, b"")

    async def put(self, source: bytes | str | Path, remote_path: str) -> None:
        """Upload bytes or a local file to ``remote_path``, creating its parent directories."""
        conn = await self.connection()
        with self._translated(f"put {remote_path}"), _sftp_errors(remote_path):
            async with conn.start_sftp_client() as sftp:
                parent = posixpath.dirname(remote_path)
                if parent:
                    await sftp.makedirs(parent, exist_ok=True)
                if isinstance(source, bytes):
                    async with sftp.open(remote_path, "wb") as remote:
                        await remote.write(source)
                else:
                    await sftp.put(os.fspath(source), remote_path)

    async def put_many(self, directory: str, files: dict[str, bytes], *, mode: int = 0o700) -> None:
        """Create ``directory`` (``mode``, parents as needed) and write ``files`` into it: one SFTP session.

        Like ``mkdir -p -m MODE``: only a directory this call creates gets ``mode``, before any file is in it.
        """
        conn = await self.connection()
        with self._translated(f"put {directory}"), _sftp_errors(directory):
            async with conn.start_sftp_client() as sftp:
                parent = posixpath.dirname(directory.rstrip("/"))
                if parent:
                    await sftp.makedirs(parent, exist_ok=True)
                if not await sftp.isdir(directory):
                    await sftp.mkdir(directory, asyncssh.SFTPAttrs(permissions=mode))
                for name, data in files.items():
                    async with sftp.open(posixpath.join(directory, name), "wb") as remote:
                        await remote.write(data)

    async def get(self, remote_path: str, max_bytes: int) -> bytes:
        """Download ``remote_path``; bigger than ``max_bytes`` raises RemoteFileTooLarge."""
        conn = await self.connection()
        with self._translated(f"get {remote_path}"), _sftp_errors(remote_path):
            async with conn.start_sftp_client() as sftp:
                # Refuse from the size first, so an oversized file is never transferred.
                size = (await sftp.stat(remote_path)).size or 0
                if size > max_bytes:
                    raise RemoteFileTooLarge(remote_path, size, max_bytes)
                data, cut = await _read_head(sftp, remote_path, max_bytes)
        if cut:  # it grew past the cap after the stat; all we know is "at least one byte over"
            raise RemoteFileTooLarge(remote_path, max_bytes + 1, max_bytes)
        return data

    async def read_head(self, remote_path: str, max_bytes: int) -> tuple[bytes, bool]:
        """The first ``max_bytes`` bytes of ``remote_path`` and whether the file was longer.

        A job wrote the file: a symlink (to a file of the node's user) or anything but a regular file
        is missing, never followed. The job is over by then, so it cannot swap the file after the check.
        """
        conn = await self.connection()
        with self._translated(f"read {remote_path}"), _sftp_errors(remote_path):
            async with conn.start_sftp_client() as sftp:
                attrs = await sftp.lstat(remote_path)
                if attrs.permissions is None or not stat.S_ISREG(attrs.permissions):
                    raise RemoteFileError(remote_path, "not a regular file")
                return await _read_head(sftp, remote_path, max_bytes)

    async def close(self) -> None:
        """Close the connection; a later call may connect again."""
        self.closing = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()


class JumpConnection(SshEndpoint):
    """The jump host itself: the first hop to every node, and where ``lxc restart`` runs."""

    hop = "jump"

    def __init__(self, ssh: SshSettings) -> None:
        if not ssh.jump_host:
            raise ValueError("JUMP_HOST is not set")
        super().__init__(
            ssh,
            name="jump",
            host=ssh.jump_host,
            port=ssh.jump_port,
            username=ssh.jump_user,
        )

    async def _open(self) -> asyncssh.SSHClientConnection:
        return await self._connect(None)


class NodeConnection(SshEndpoint):
    """One GPU node, reached through the jump host (or directly when JUMP_HOST is unset).

    Each node has its own jump connection unless one is passed in to share; a shared one is
    left open by ``close()``.
    """

    hop = "node"

    def __init__(self, ssh: SshSettings, spec: NodeSpec, *, jump: JumpConnection | None = None) -> None:
        super().__init__(ssh, name=spec.name, host=spec.host, port=spec.port, username=spec.user or ssh.user)
        self.spec = spec
        self._owns_jump = jump is None and bool(ssh.jump_host)
        self.jump = JumpConnection(ssh) if self._owns_jump else jump

    async def _open(self) -> asyncssh.SSHClientConnection:
        tunnel = await self.jump.connection() if self.jump is not None else None
        return await self._connect(tunnel)

    async def close(self) -> None:
        await super().close()
        if self._owns_jump and self.jump is not None:
            await self.jump.close()


async def _read_head(sftp: asyncssh.SFTPClient, path: str, max_bytes: int) -> tuple[bytes, bool]:
    async with sftp.open(path, "rb") as remote:
        # One byte past the cap tells a file of exactly max_bytes from a longer one.
        data: bytes = await remote.read(max_bytes + 1)
    return data[:max_bytes], len(data) > max_bytes


@contextmanager
def _sftp_errors(path: str) -> Iterator[None]:
    try:
        yield
    except SFTP_CONNECTION_ERRORS as e:
        raise NodeUnreachable(f"{path}: SFTP connection lost: {e.reason}") from e
    except asyncssh.SFTPNoSuchFile as e:
        raise RemoteFileMissing(path, e.reason) from e
    except asyncssh.SFTPError as e:
        raise RemoteFileError(path, e.reason) from e


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _as_bytes(data: object) -> bytes:
    return data if isinstance(data, bytes) else b""
