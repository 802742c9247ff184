"""Content-addressed files beside the ledger: code, console output and results, named by SHA-256.

Events carry only digests and sizes; the bytes live in ``JOBS_DIR/blobs/ab/abcdef...``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ledger.events import Blob


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
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        return Blob(digest=digest, size=len(data), truncated=truncated)

    def get(self, blob: Blob | None) -> bytes | None:
        if blob is None:
            return None
        return self.path(blob.digest).read_bytes()

    def read_range(self, blob: Blob, offset: int, limit: int) -> bytes:
        with self.path(blob.digest).open("rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
