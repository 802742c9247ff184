"""``gpuledger restore --from-replica [--at TIME]``: the ledger from the ``[replica]`` target, as of its
newest state or of a point in time, with the blobs its events name.

Litestream rebuilds the ledger into a private staging folder beside the target; the blobs it names
are fetched from the target; both are verified before the ledger is renamed into place, whole.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from executors.errors import ExecutorError
from executors.replica import litestream_binary, litestream_env, open_target, write_config
from executors.replica_target import target_of
from ledger.domain.errors import LedgerError, StoreError
from ledger.store.backup import BLOBS_NAME, blob_path
from ledger.store.pruning import jobs_naming, live_digests
from ledger.store.retention import lost_writes
from ledger.store.schema import connect
from ledger.store.settings import Settings
from projections.live import open_store

PARALLEL_GETS = 16  # blobs fetched at once from an sftp:// or s3:// target


def parse_at(text: str) -> str:
    """``--at`` as Litestream's RFC 3339 UTC timestamp; a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StoreError(f"--at {text!r} is not a time (ISO 8601, e.g. 2026-12-07T19:30:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def litestream_restore(settings: Settings, staging: Path, at: str | None) -> Path:
    """Run ``litestream restore`` into ``staging``; the restored file, or StoreError with its output."""
    target = target_of(settings)
    config = write_config(settings, target, staging / "litestream.yml")
    out = staging / "gpuledger.db"
    command = [litestream_binary(), "restore", "-config", str(config), "-o", str(out)]
    if at is not None:
        command += ["-timestamp", at]
    command.append(str(Path(settings.storage.database_path).resolve()))
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False, env=litestream_env())
    if done.returncode != 0 or not out.is_file():
        said = " ".join((done.stderr or done.stdout).split())[-500:]
        raise StoreError(f"litestream restore from {target.name} failed (status {done.returncode}): {said}")
    return out


async def fetch_blobs(settings: Settings, digests: set[str], blobs: Path) -> list[str]:
    """Copy the named blobs from the target into ``blobs``; the digests the target lacks."""
    store = open_target(target_of(settings))
    ordered = sorted(digests)

    async def fetched(digest: str) -> bool:
        dest = blob_path(blobs, digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return await store.get(digest, dest)

    try:
        found = [await fetched(d) for d in ordered[:1]]  # the first alone: it opens the connection
        for start in range(1, len(ordered), PARALLEL_GETS):  # then a few at once: each is a round trip
            found += await asyncio.gather(*(fetched(d) for d in ordered[start : start + PARALLEL_GETS]))
    finally:
        await store.close()
    return [digest for digest, there in zip(ordered, found, strict=True) if not there]


def restore_from_replica(
    args: argparse.Namespace, settings: Settings, target: Path, jobs: Path
) -> tuple[Path, list[str]]:
    """The staged, restored ledger (its blobs now in ``jobs/blobs``) and the blobs the target lacked;
    the caller verifies and renames it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.replica-", dir=target.parent))
    try:
        staged = litestream_restore(settings, staging, parse_at(args.at) if args.at else None)
        conn = connect(staged, readonly=True)
        try:
            digests = live_digests(conn)  # a pruned job's outputs are not fetched back
        finally:
            conn.close()
        missing = asyncio.run(fetch_blobs(settings, digests, jobs / BLOBS_NAME))
    except ExecutorError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(str(e)) from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if missing:
        print(f"warning: {len(missing)} blob(s) named by the replica's events are not at the target, e.g. {missing[0]}")
        print("(blobs newer than the last copy pass; the ledger keeps every event and now records their loss)")
        record_losses(staged, missing)
    return staged, missing


def record_losses(staged: Path, missing: list[str]) -> None:
    """The loss, as events in the restored ledger (``ledger.store.retention.lost_writes``), before anything
    checks or serves it."""
    conn = connect(staged, readonly=True)
    try:
        lost = jobs_naming(conn, missing)
    finally:
        conn.close()
    store = open_store(staged)
    try:
        for result in store.execute(lost_writes(lost, by="restore"), write_projections=True):
            if isinstance(result, LedgerError):
                raise result
    finally:
        store.close()
