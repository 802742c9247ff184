"""A job's files as handlers read them (the ``JobOutput`` port): code, results, console output.

Finished output is a stored blob; a running attempt's is the live copy the runner grows under
``JOBS_DIR/live`` until the job ends and the blob takes over.
"""

from __future__ import annotations

from pathlib import Path

from api.present import job_results
from api.schemas import JobResults
from ledger.domain.events import Artifact
from ledger.domain.jobs import JobState
from ledger.store.blobs import BlobStore


class JobFiles:
    """The ``JobOutput`` of this server: its blob store and its jobs directory."""

    def __init__(self, blobs: BlobStore, jobs_dir: str, inline_output_bytes: int) -> None:
        self.blobs = blobs
        self.live_root = Path(jobs_dir) / "live"
        self.inline_output_bytes = inline_output_bytes

    def code(self, job: JobState) -> bytes:
        return self.blobs.get(job.code) or b""

    def results_file(self, job: JobState) -> bytes | None:
        return self.blobs.get(job.results)

    def artifact_file(self, job: JobState, path: str) -> tuple[Artifact, Path] | None:
        """The stored file of the job's artifact at ``path`` (None: no such artifact, or pruned)."""
        if job.artifacts_pruned_at is not None:
            return None
        found = next((a for a in job.artifacts if a.path == path), None)
        return None if found is None else (found, self.blobs.path(found.digest))

    def results(self, job: JobState) -> JobResults:
        """Console output inline (up to INLINE_OUTPUT_BYTES), exit code and results file."""
        return job_results(job, self.blobs, self.inline_output_bytes)

    def latest(self, job: JobState, stream: str) -> Path | None:
        """The file holding the latest attempt's stdout/stderr (as ``read`` reads it): a stored blob,
        else the live copy; None when that attempt ended without output, or retention pruned it (a
        blob it shared with a newer job may still exist: it is not this job's to show any more)."""
        if job.pruned_at is not None:
            return None
        past = next((p for p in job.history if p.attempt == max(job.attempt, 1)), None)
        blob = past if past is not None else job
        stored = blob.stdout if stream == "stdout" else blob.stderr
        if stored is not None:
            return self.blobs.path(stored.digest)
        return None if past is not None else self.live_root / job.attempt_key / stream

    def read(self, job: JobState, attempt: int, stream: str, offset: int, limit: int) -> tuple[bytes, bool]:
        """Bytes of one attempt's stdout/stderr from ``offset``, and whether that output is complete: an
        earlier attempt's or a finished job's stored blob, else the running attempt's live copy."""
        if job.pruned_at is not None:  # retention removed the stored output: nothing to read, by design
            return b"", True
        past = next((p for p in job.history if p.attempt == attempt), None)
        if past is not None or attempt != max(job.attempt, 1):
            blob = None if past is None else past.stdout if stream == "stdout" else past.stderr
            return (self.blobs.read_range(blob, offset, limit) if blob is not None else b""), past is not None
        blob = job.stdout if stream == "stdout" else job.stderr
        if blob is not None:
            return self.blobs.read_range(blob, offset, limit), True
        live = self.live_root / job.attempt_key / stream
        try:
            with live.open("rb") as handle:
                handle.seek(offset)
                return handle.read(limit), job.is_terminal
        except FileNotFoundError:  # not started yet, or just stored and removed (then the blob has it)
            return b"", job.is_terminal
