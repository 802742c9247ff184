"""The ledger's room on its disk: a preallocated reserve file that job files can never take.

The reserve sits beside the ledger. When a commit finds the disk full, the store deletes it and tries
again, so the write that was refused (an acknowledged submit, a job's finish) still lands; once the
filesystem has room again it is preallocated anew. ``free_bytes`` is what the dispatch floor and
``/readyz`` read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path

import apsw
import structlog

log = structlog.get_logger()
MIB = 1024 * 1024
RESTORE_CHECK_S = 5.0  # how often, at most, a released reserve looks for room to come back
FLOOR_BYTES, FLOOR_SHARE = 128 * MIB, 0.05  # the automatic dispatch floor: the smaller of the two


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (a file or folder)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def disk_full(error: BaseException) -> bool:
    """Whether a driver or OS error means "no space left" (not a bug, not damage)."""
    if isinstance(error, apsw.FullError):
        return True
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskReserve:
    """``size`` bytes preallocated at ``path``; 0 keeps no reserve."""

    def __init__(self, path: str | Path, size: int) -> None:
        self.path = Path(path)
        self.size = size
        self._checked = 0.0

    @property
    def held(self) -> bool:
        return self.size > 0 and self.path.exists()

    def ensure(self) -> bool:
        """Preallocate the reserve if it is missing and the disk has room for it twice over (so that
        taking it back never fills the disk by itself); True when it is held afterwards. One of
        another size (the setting changed) is given back first. Never raises: a reserve is a help."""
        try:
            if self.path.exists() and self.path.stat().st_size != self.size:
                self.path.unlink()
            if self.size <= 0 or self.held:
                return self.held
            if free_bytes(self.path.parent) < 2 * self.size:
                return False
            self._allocate()
        except OSError as e:  # the room went meanwhile, or no folder yet: no half reserve, it would mislead
            self.path.unlink(missing_ok=True)
            log.warning("ledger.reserve_failed", path=str(self.path), error=str(e))
            return False
        log.info("ledger.reserve_held", path=str(self.path), bytes=self.size)
        return True

    def _allocate(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Delete the reserve (the disk is full); True when that freed something."""
        if not self.held:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        log.warning("ledger.reserve_released", path=str(self.path), bytes=self.size)
        return True

    def restore_when_room(self) -> None:
        """After a write went through: bring the reserve back if it was released and room returned
        (a look at the filesystem at most every ``RESTORE_CHECK_S``)."""
        if self.size <= 0 or time.monotonic() - self._checked < RESTORE_CHECK_S:
            return
        self._checked = time.monotonic()
        if not self.held:
            self.ensure()


def auto_floor(path: str | Path) -> int:
    """128 MiB, or 5 % of the filesystem where that is less (a small disk is not held for good)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    stat = os.statvfs(folder)
    return min(FLOOR_BYTES, int(stat.f_blocks * stat.f_frsize * FLOOR_SHARE))


def dispatch_hold(path: str | Path, floor: int | None) -> str | None:
    """Why no job may start now (the ledger's filesystem is below ``floor`` free bytes; None: the
    automatic floor), or None."""
    if floor is None:
        floor = auto_floor(path)
    if floor <= 0:
        return None
    free = free_bytes(path)
    if free >= floor:
        return None
    below = f"below DISK_FREE_FLOOR_BYTES ({floor // MIB} MiB)"
    return f"disk nearly full: {free // MIB} MiB free on the ledger's disk, {below}"
