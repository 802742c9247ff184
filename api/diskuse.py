"""Disk use of the ledger, its blobs and the jobs' work folders, measured in a thread and cached.

A walk of the blob store is seconds on a large one: never per scrape, never on the event loop. A
daemon thread measures every ``REFRESH_S`` and ``/metrics`` and the dashboard read the last figures.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgspec
import structlog

from ledger.domain.clock import iso, now_us
from ledger.store.disk import free_bytes

log = structlog.get_logger()
REFRESH_S = 30.0
LEDGER_SUFFIXES = ("", "-wal", "-shm", ".reserve")


class DiskUse(msgspec.Struct, frozen=True, kw_only=True):
    """The dashboard's ``disk`` block (bytes), and when it was measured."""

    ledger_bytes: int
    blobs_bytes: int
    workdirs_bytes: int
    free_bytes: int
    measured_at: str | None


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (not following links); files vanishing mid-walk count 0."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def measure(database_path: str, jobs_dir: str) -> DiskUse:
    ledger = sum(os.path.getsize(p) for s in LEDGER_SUFFIXES if os.path.isfile(p := f"{database_path}{s}"))
    jobs = Path(jobs_dir)
    return DiskUse(
        ledger_bytes=ledger,
        blobs_bytes=tree_bytes(jobs / "blobs"),
        workdirs_bytes=tree_bytes(jobs / "work") + tree_bytes(jobs / "live"),
        free_bytes=free_bytes(database_path),
        measured_at=iso(now_us()),
    )


class DiskUsage:
    """The latest figures (None until the first measurement), refreshed by a daemon thread."""

    def __init__(self, database_path: str, jobs_dir: str, refresh_s: float = REFRESH_S) -> None:
        self.database_path, self.jobs_dir, self.refresh_s = database_path, jobs_dir, refresh_s
        self.latest: DiskUse | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-usage", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latest = measure(self.database_path, self.jobs_dir)
            except OSError as e:  # a vanished folder or a statvfs error: the last figures stay
                log.warning("disk_usage.failed", error=str(e))
            self._stop.wait(self.refresh_s)
