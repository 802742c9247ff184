"""Where a replica lives: a directory, an SFTP server or an S3 bucket, seen as ``ledger/`` (Litestream's)
and ``blobs/``.

Blobs are content-addressed (``blobs/ab/abcdef...``), so a copy is idempotent: a name present at the
target holds those bytes. Each copy is written under a temporary name and renamed, so a half-sent
blob never carries a real name (an S3 PUT is atomic by itself: ``executors.replica_s3``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

from executors.errors import ReplicaError
from ledger.store.settings import ReplicaSettings, Settings

LEDGER_DIR = "ledger"
BLOBS_DIR = "blobs"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``[replica] url`` with the SSH credentials an sftp:// target needs."""

    scheme: str
    path: str
    host: str = ""
    port: int = 22
    user: str = ""
    key_file: str | None = None
    known_hosts: str | None = None
    endpoint: str | None = None  # s3: an S3-compatible store (host is the bucket, path the prefix)
    region: str = ""
    path_style: bool = False
    shipping: str = ""  # s3: Litestream's local level-0 LTX folder beside the ledger (what it ships next)

    @property
    def name(self) -> str:
        """The URL without credentials, for logs and /readyz."""
        where = f"{self.user}@{self.host}:{self.port}" if self.scheme == "sftp" else self.host
        return f"{self.scheme}://{where}{self.path}"

    @property
    def prefix(self) -> str:
        """s3: the key prefix under the bucket (no leading or trailing slash; empty for the bucket's root)."""
        return self.path.strip("/")


def target_of(settings: Settings) -> Target:
    replica = settings.replica
    if replica is None:
        raise ReplicaError("no [replica] table in the settings: nothing to replicate to or restore from")
    return parse_target(replica, settings)


def parse_target(replica: ReplicaSettings, settings: Settings) -> Target:
    parts = urlsplit(replica.url)
    path = parts.path.rstrip("/") or "/"
    if parts.scheme == "sftp":
        if not parts.hostname or not parts.username:
            raise ReplicaError(f"{replica.url}: an sftp:// replica needs user@host (sftp://user@host:port/path)")
        return Target(
            scheme="sftp",
            path=path,
            host=parts.hostname,
            port=parts.port or 22,
            user=parts.username,
            key_file=replica.key_file or settings.ssh.key_file,
            known_hosts=replica.known_hosts or settings.ssh.known_hosts,
        )
    if parts.scheme == "s3":
        region = replica.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = replica.endpoint.rstrip("/") if replica.endpoint else None
        path_style = replica.path_style if replica.path_style is not None else endpoint is not None
        ledger = Path(settings.storage.database_path).resolve()
        return Target(
            scheme="s3", path=path, host=parts.hostname or "", endpoint=endpoint, region=region,
            path_style=path_style, shipping=str(ledger.parent / f".{ledger.name}-litestream" / "ltx" / "0"),
        )  # fmt: skip
    return Target(scheme=parts.scheme, path=path, host=parts.hostname or "")


def host_key(target: Target) -> str:
    """The target's public host key from the known_hosts file, as Litestream's ``host-key`` wants it."""
    if not target.known_hosts:
        raise ReplicaError("an sftp:// replica needs known_hosts (or SSH_KNOWN_HOSTS) to trust the target")
    names = {target.host, f"[{target.host}]:{target.port}"}
    for line in Path(target.known_hosts).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and names & set(fields[0].split(",")):
            return f"{fields[1]} {fields[2]}"
    raise ReplicaError(f"{target.known_hosts} has no key for {target.host}:{target.port} (hashed names are not read)")


class BlobTarget(Protocol):
    """What the blob copier, the lag probe and the restore need of a target."""

    async def close(self) -> None: ...
    async def present(self) -> set[str]: ...
    async def put(self, digest: str, source: Path) -> None: ...
    async def get(self, digest: str, dest: Path) -> bool: ...
    async def newest_ledger_write(self) -> float | None: ...


class FileTarget:
    """A replica in a local (or mounted) directory; its file work runs in threads, off the server's loop."""

    def __init__(self, target: Target) -> None:
        self.root = Path(target.path)

    async def close(self) -> None:
        return None

    async def present(self) -> set[str]:
        return await asyncio.to_thread(self._present)

    def _present(self) -> set[str]:
        return {p.name for p in (self.root / BLOBS_DIR).glob("??/*") if not p.name.startswith(".")}

    async def put(self, digest: str, source: Path) -> None:
        await asyncio.to_thread(self._put, digest, source)

    def _put(self, digest: str, source: Path) -> None:
        dest = self.root / BLOBS_DIR / digest[:2] / digest
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{digest}.part")
        shutil.copyfile(source, partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, dest)

    async def get(self, digest: str, dest: Path) -> bool:
        source = self.root / BLOBS_DIR / digest[:2] / digest
        if not source.is_file():
            return False
        shutil.copyfile(source, dest)
        return True

    async def newest_ledger_write(self) -> float | None:
        """When Litestream last shipped WAL to the target (its newest LTX file), or None before the first."""
        return await asyncio.to_thread(self._newest_ledger_write)

    def _newest_ledger_write(self) -> float | None:
        newest: dict[str, float] = {}
        for path in (self.root / LEDGER_DIR / "ltx").glob("*/*.ltx"):
            with contextlib.suppress(FileNotFoundError):  # removed by Litestream's retention meanwhile
                level = path.parent.name
                newest[level] = max(newest.get(level, 0.0), path.stat().st_mtime)
        return shipped(newest)


class SftpTarget:
    """A replica on an SFTP server, over one asyncssh connection opened on first use."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.root = PurePosixPath(target.path)
        self._conn: Any = None
        self._sftp: Any = None
        self._folders: set[str] = set()  # prefix folders known to exist: no makedirs round trip

    async def _client(self) -> Any:
        if self._sftp is None:
            import asyncssh  # only where an sftp target is configured

            t = self.target
            try:
                self._conn = await asyncssh.connect(
                    t.host, port=t.port, username=t.user, known_hosts=t.known_hosts,
                    client_keys=[t.key_file] if t.key_file else None,
                )  # fmt: skip
                self._sftp = await self._conn.start_sftp_client()
            except (OSError, asyncssh.Error) as e:
                raise ReplicaError(f"cannot reach {t.name}: {e}") from e
        return self._sftp

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._sftp = None
        self._folders = set()

    async def present(self) -> set[str]:
        sftp = await self._client()
        root = self.root / BLOBS_DIR
        if not await sftp.exists(str(root)):
            return set()
        found: set[str] = set()
        for prefix in await sftp.listdir(str(root)):
            if len(prefix) == 2:
                found.update(n for n in await sftp.listdir(str(root / prefix)) if len(n) == 64)
        return found

    async def put(self, digest: str, source: Path) -> None:
        sftp = await self._client()
        folder = self.root / BLOBS_DIR / digest[:2]
        if str(folder) not in self._folders:
            await sftp.makedirs(str(folder), exist_ok=True)
            self._folders.add(str(folder))
        partial = str(folder / f".{digest}.part")
        await sftp.put(str(source), partial)
        await sftp.posix_rename(partial, str(folder / digest))

    async def get(self, digest: str, dest: Path) -> bool:
        sftp = await self._client()
        source = str(self.root / BLOBS_DIR / digest[:2] / digest)
        if not await sftp.exists(source):
            return False
        await sftp.get(source, str(dest))
        return True

    async def newest_ledger_write(self) -> float | None:
        sftp = await self._client()
        newest: dict[str, float] = {}
        ltx = self.root / LEDGER_DIR / "ltx"
        if not await sftp.exists(str(ltx)):
            return None
        for level in await sftp.listdir(str(ltx)):
            for entry in await sftp.readdir(str(ltx / level)):
                if entry.filename.endswith(".ltx") and entry.attrs.mtime is not None:
                    newest[level] = max(newest.get(level, 0.0), float(entry.attrs.mtime))
        return shipped(newest)


def shipped(newest_by_level: dict[str, float]) -> float | None:
    """Level 0 is where each sync lands; a later compaction (level 1 and up) only rewrites what level 0
    already held, so it says nothing about new commits. Other levels count only once level 0 is empty."""
    if "0" in newest_by_level:
        return newest_by_level["0"]
    return max(newest_by_level.values(), default=None)
