"""Content-addressed files beside the ledger: code, console output and results, named by SHA-256.

Events carry only digests and sizes; the bytes live in ``JOBS_DIR/blobs/ab/abcdef...``.
A write that fails (a full disk) removes its temporary file; the server sweeps any left by a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path

import structlog

from ledger.domain.errors import LedgerUnavailable
from ledger.domain.events import Blob
from ledger.store.disk import disk_full

log = structlog.get_logger()
STALE_TMP_S = 600.0  # a temporary file this old is no write in progress (a put takes well under a second)


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a SHA-256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes, *, truncated: bool = False) -> Blob:
        """Store bytes durably (written, fsynced, renamed) and return their digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            try:
                self._write(target, data)
            except OSError as e:
                if disk_full(e):  # a full disk is "not now", as for the ledger's own writes
                    raise LedgerUnavailable(f"cannot store a blob: {e}", full=True) from e
                raise
        return Blob(digest=digest, size=len(data), truncated=truncated)

    def _write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def sweep_temporary(self, older_than_s: float = STALE_TMP_S) -> int:
        """Remove temporary files of writes that never finished (a crash mid-put); how many went."""
        removed, cutoff = 0, time.time() - older_than_s
        for tmp in self.root.glob("*/.tmp-*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except OSError as e:  # one that cannot go must not stop the others
                log.warning("blobs.sweep_failed", path=str(tmp), error=str(e))
        if removed:
            log.info("blobs.swept", removed=removed)
        return removed

    def get(self, blob: Blob | None) -> bytes | None:
        if blob is None:
            return None
        return self.path(blob.digest).read_bytes()

    def read_range(self, blob: Blob, offset: int, limit: int) -> bytes:
        with self.path(blob.digest).open("rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
