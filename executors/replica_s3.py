"""An s3:// replica target: the blobs under ``<prefix>/blobs/ab/abcdef...``, Litestream's LTX files under
``<prefix>/ledger/<level>/``, through ``obstore`` (Rust's ``object_store``: async, needs only typing-extensions).

Credentials come from the server's environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``), read by obstore and by Litestream alike; endpoint, region and addressing style
from the ``[replica]`` table. A PUT is atomic on S3 (a reader sees the whole object or none), so no
temporary name is needed: a half-sent blob never carries a real name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from executors.errors import ReplicaError
from executors.replica_target import BLOBS_DIR, LEDGER_DIR, Target

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

T = TypeVar("T")


def s3_store(target: Target) -> S3Store:
    """The bucket, rooted at the target's prefix; what the environment says about credentials applies."""
    config: S3Config = {"region": target.region, "virtual_hosted_style_request": not target.path_style}
    if target.endpoint is not None:
        config["endpoint"] = target.endpoint
    # object_store retries for up to 3 minutes by default: an unreachable bucket would hold the lag probe
    # and the copier that long, silently; a few quick retries, then an error that /readyz shows
    client: ClientConfig = {"connect_timeout": "5s", "timeout": "120s"}
    if (target.endpoint or "").startswith("http://"):
        client["allow_http"] = True
    retry: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=20)}
    try:
        return S3Store(
            target.host, prefix=target.prefix or None, config=config, client_options=client, retry_config=retry
        )
    except BaseError as e:
        raise ReplicaError(f"{target.name}: {e}") from e


async def _call(target: Target, work: Awaitable[T]) -> T:
    """One S3 request; its failure as ReplicaError (the copier and the lag probe retry on it). A missing
    key passes through as it came: obstore raises Python's FileNotFoundError for a 404 (its own
    NotFoundError is kept for the versions that raise that)."""
    try:
        return await work
    except (NotFoundError, FileNotFoundError):
        raise
    except BaseError as e:
        raise ReplicaError(f"{target.name}: {' '.join(str(e).split())[:300]}") from e


class S3Target:
    """A replica in an S3 bucket (or an S3-compatible store), one client for the target's life."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.store = s3_store(target)

    async def close(self) -> None:
        return None  # obstore's client holds pooled connections only; nothing to hand back

    async def _keys(self, prefix: str) -> list[tuple[str, float]]:
        """Every key under ``prefix`` (relative to the target) with its modification time."""
        found: list[tuple[str, float]] = []
        try:
            async for batch in obstore.list(self.store, prefix=prefix):
                found += [(meta["path"], meta["last_modified"].timestamp()) for meta in batch]
        except BaseError as e:
            raise ReplicaError(f"{self.target.name}: listing {prefix}: {' '.join(str(e).split())[:300]}") from e
        return found

    async def present(self) -> set[str]:
        names = (key.rsplit("/", 1)[-1] for key, _ in await self._keys(f"{BLOBS_DIR}/"))
        return {name for name in names if len(name) == 64}

    async def put(self, digest: str, source: Path) -> None:
        await _call(self.target, obstore.put_async(self.store, f"{BLOBS_DIR}/{digest[:2]}/{digest}", source))

    async def get(self, digest: str, dest: Path) -> bool:
        try:
            answer = await _call(self.target, obstore.get_async(self.store, f"{BLOBS_DIR}/{digest[:2]}/{digest}"))
        except (NotFoundError, FileNotFoundError):  # not copied yet: the caller records the loss
            return False
        with dest.open("wb") as handle:  # streamed: an output blob may be larger than memory allows
            async for chunk in answer.stream():
                handle.write(chunk)
        return True

    async def newest_ledger_write(self) -> float | None:
        """The time up to which every ledger write is in the bucket: when Litestream made the newest of
        its local level-0 LTX files whose transaction the bucket holds. S3's object times have whole
        seconds (a sync in the same second as the ledger's last write would read as behind it for ever),
        so the bucket says *which* transactions it has (the LTX names) and the local file says *when*."""
        remote = max((last_txid(key) for key, _ in await self._keys(f"{LEDGER_DIR}/")), default=-1)
        return await asyncio.to_thread(local_shipped, Path(self.target.shipping), remote)


def last_txid(key: str) -> int:
    """The last transaction an LTX object holds (``.../<first>-<last>.ltx``, hexadecimal), -1 for others."""
    name = key.rsplit("/", 1)[-1]
    first, _, last = name.removesuffix(".ltx").partition("-")
    try:
        return int(last, 16) if name.endswith(".ltx") and first else -1
    except ValueError:
        return -1


def local_shipped(folder: Path, remote_txid: int) -> float | None:
    """The modification time of the newest local LTX file at or below ``remote_txid``, or None."""
    newest: float | None = None
    for path in folder.glob("*.ltx"):
        if 0 <= last_txid(path.name) <= remote_txid:
            with contextlib.suppress(FileNotFoundError):  # removed by Litestream's retention meanwhile
                stamp = path.stat().st_mtime
                newest = stamp if newest is None else max(newest, stamp)
    return newest
