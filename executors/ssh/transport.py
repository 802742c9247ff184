"""The wrapper protocol over SSH: the ``Transport`` the node runner needs, on a ``NodeConnection``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from executors.errors import JobFileUnreadable, RemoteCommandFailed, RemoteFileError, RemoteFileMissing
from executors.protocol import WRAPPER_NAME, WRAPPER_SOURCE, clean_command
from executors.ssh.connection import NodeConnection


class SshTransport:
    def __init__(self, conn: NodeConnection, python: str = "python3") -> None:
        self.conn = conn
        self.node = conn.name
        self.python = python

    async def put_files(self, workdir: str, files: dict[str, bytes]) -> None:
        # A private workdir, created 0700 before anything is written into it; all in one SFTP session
        # rather than a shell round trip for mkdir and a session per file.
        await self.conn.put_many(workdir, files, mode=0o700)

    async def run(self, cmd: str, *, timeout: float) -> tuple[int, bytes, bytes]:
        result = await self.conn.run(cmd, timeout=timeout, check=False)
        return result.exit_status, result.stdout, result.stderr

    def stream(self, cmd: str) -> AsyncIterator[bytes]:
        return self.conn.open_stream(cmd)

    async def fetch(self, path: str, max_bytes: int) -> tuple[bytes, bool] | None:
        try:
            return await self.conn.read_head(path, max_bytes)
        except RemoteFileMissing:
            return None
        except RemoteFileError as e:  # there, but a socket, FIFO, directory, symlink or unreadable
            raise JobFileUnreadable(path, e.reason) from e

    async def remove_tree(self, path: str) -> None:
        """The wrapper's ``clean``, as the node user; RemoteCommandFailed if the tree stays. Where the
        job directory's wrapper is gone (an earlier clean got that far) and ``rm -rf`` cannot finish
        (files of the job's subordinate ids), the wrapper is put back for one more ``clean``."""
        result = await self.conn.run(clean_command(self.python, path), timeout=3600, check=False)
        if result.exit_status != 0:
            await self.put_files(path, {WRAPPER_NAME: WRAPPER_SOURCE})
            result = await self.conn.run(clean_command(self.python, path), timeout=3600, check=False)
        if result.exit_status != 0:
            raise RemoteCommandFailed(f"clean {path}", result.exit_status or 1, result.stderr)

    async def probe(self) -> None:
        await self.conn.run("true", timeout=self.conn.ssh.connect_timeout_s + 5)
