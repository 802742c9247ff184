"""A job's artifacts: the regular files it left under ``outputs/`` in its workdir (and those matching its
``artifacts:`` globs), each stored as a blob once the job has ended, up to ``ARTIFACT_MAX_BYTES`` and the
owner's ``ARTIFACT_QUOTA_BYTES``.

Files are listed by ``find -type f`` on the node: it neither follows nor lists symbolic links, nor walks
into a linked directory, and each file is then read with the transport's ``fetch``, which refuses a link
or any other file that is not regular. So a link in ``outputs/`` never makes the server read outside it.
"""

from __future__ import annotations

import asyncio
import shlex

import msgspec
import pathspec
import structlog

from executors.errors import JobFileUnreadable
from executors.transport import Transport
from ledger.domain.artifact_quota import over_quota
from ledger.domain.events import Artifact, JobArtifactsStored
from ledger.domain.jobs import JobState
from ledger.store.blobs import BlobStore

log = structlog.get_logger()
OUTPUTS = "outputs"
MAX_FILES = 1000  # artifacts kept per job; more are named as skipped
LISTING_BYTES = 4 * 1024 * 1024
MAX_SKIPPED_SHOWN = 20


def listing_command(work_dir: str, *, whole: bool) -> str:
    """``<size>\\t<path>\\0`` of each regular file below ``outputs/`` (or, with globs, the whole workdir)."""
    start = "." if whole else OUTPUTS
    return (
        f"cd {shlex.quote(work_dir)} && test -d {start} || exit 0; "
        f"find {start} -xdev -type f -printf '%s\\t%P\\0' 2>/dev/null | head -c {LISTING_BYTES}"
    )


def parse_listing(output: bytes, *, prefix: str) -> list[tuple[str, int]]:
    """(path, size) per listed file, paths relative to the workdir; a name that is not UTF-8 is left out."""
    found = []
    for record in output.split(b"\0"):
        size, _, name = record.partition(b"\t")
        try:
            path = name.decode("utf-8")
            found.append((f"{prefix}{path}", int(size)))
        except (UnicodeDecodeError, ValueError):
            continue
    return sorted(found)


def wanted(files: list[tuple[str, int]], globs: list[str]) -> list[tuple[str, int]]:
    """Files under ``outputs/`` and those the job's globs (gitignore syntax) match."""
    spec = pathspec.GitIgnoreSpec.from_lines(globs)
    return [(path, size) for path, size in files if path.startswith(f"{OUTPUTS}/") or spec.match_file(path)]


class Quota(msgspec.Struct, frozen=True, kw_only=True):
    """The owner's artifact quota (ARTIFACT_QUOTA_BYTES) and what is left of it."""

    bytes: int
    left: int


async def collect(
    transport: Transport, blobs: BlobStore, job: JobState, work_dir: str, max_bytes: int, quota: Quota | None = None
) -> JobArtifactsStored | None:
    """Store the job's artifacts, up to ``max_bytes`` and what is left of the owner's ``quota``; None
    when it left none (and so wrote nothing to say)."""
    if max_bytes == 0:
        return None
    whole = bool(job.artifact_globs)
    code, out, _ = await transport.run(listing_command(work_dir, whole=whole), timeout=120)
    if code != 0:
        return None
    listed = wanted(parse_listing(out, prefix="" if whole else f"{OUTPUTS}/"), job.artifact_globs)
    if not listed:
        return None
    limit = max_bytes if quota is None else min(max_bytes, quota.left)
    kept: list[Artifact] = []
    skipped: list[str] = []
    total = 0
    for path, size in listed:
        if len(kept) >= MAX_FILES or total + size > limit:
            skipped.append(_past_limit(path, max_bytes, quota, len(kept) < MAX_FILES and total + size <= max_bytes))
            continue
        artifact = await _store(transport, blobs, f"{work_dir}/{path}", path, limit - total)
        if isinstance(artifact, str):
            skipped.append(artifact)
            continue
        kept.append(artifact)
        total += artifact.size
    log.info("job.artifacts_stored", job_id=job.job_id, files=len(kept), bytes=total, skipped=len(skipped))
    return JobArtifactsStored(job_id=job.job_id, files=kept, bytes=total, skipped=skipped[:MAX_SKIPPED_SHOWN])


def _past_limit(path: str, max_bytes: int, quota: Quota | None, within_job: bool) -> str:
    """Why a file was left behind: the owner's quota where the job's own limits had room, else those."""
    if quota is not None and within_job:
        return over_quota(path, quota.bytes)
    return f"{path}: past ARTIFACT_MAX_BYTES ({max_bytes} bytes, {MAX_FILES} files)"


async def _store(transport: Transport, blobs: BlobStore, full: str, path: str, room: int) -> Artifact | str:
    """The stored artifact, or why it was left behind."""
    try:
        fetched = await transport.fetch(full, room)
    except JobFileUnreadable as e:
        return f"{path}: {e.reason}"
    if fetched is None:
        return f"{path}: gone"
    data, cut = fetched
    if cut:
        return f"{path}: past ARTIFACT_MAX_BYTES (it grew after the listing)"
    blob = await asyncio.to_thread(blobs.put, data)  # ends in fsync: off the event loop
    return Artifact(path=path, size=blob.size, digest=blob.digest)
