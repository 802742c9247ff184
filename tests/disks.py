"""Small filesystems for disk tests: ``tmpfs(size)`` mounts a tmpfs of that size and unmounts it at
the end whatever happened, so a test that fills a disk never fills the machine's."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    mounts: list[Path] = []

    def mount(size: str = "64m") -> Path:
        target = tmp_path / f"tmpfs{len(mounts)}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], check=True)
        mounts.append(target)
        return target

    try:
        yield mount
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s filesystem with one file (another process's, as a job's
    would be); the file's path, to give the room back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 1 << 14, 512, 1):
            while True:
                try:
                    os.write(fd, b"x" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler
