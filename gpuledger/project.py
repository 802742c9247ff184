"""A project directory packed for submission: its files (less what ``.gitignore`` and ``.gpuledgerignore``
exclude), as a deterministic uncompressed tar, so the same tree always packs to the same bytes (and digest).

Uncompressed on purpose: the server's size check is then the bytes it stores and unpacks, never a ratio.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pathspec

from gpuledger.errors import ProjectTooLarge

IGNORE_FILES = (".gitignore", ".gpuledgerignore")
ALWAYS_IGNORED = [".git/", "__pycache__/", "*.pyc"]  # never part of what runs, often the bulk of a tree
PROJECT_MAX_BYTES = 64 * 1024 * 1024  # the server's default PROJECT_MAX_BYTES; it checks its own again
MAX_BYTES_VARIABLE = "GPULEDGER_PROJECT_MAX_BYTES"  # where the admin raised the server's, raise this one too
LARGEST_SHOWN = 5


@dataclass(frozen=True)
class PackedProject:
    data: bytes
    files: list[tuple[str, int]]  # (path, size) of each packed file, in the archive's order

    @property
    def size(self) -> int:
        return len(self.data)


def _ignore_spec(root: Path) -> pathspec.GitIgnoreSpec:
    """The root's ignore files, in gitignore syntax (nested ``.gitignore`` files are not read)."""
    lines = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            lines.extend(path.read_text(encoding="utf-8").splitlines())
    return pathspec.GitIgnoreSpec.from_lines(lines)


def project_paths(root: Path) -> list[str]:
    """The project's files and links to pack, relative POSIX paths, sorted (the archive's order)."""
    spec = _ignore_spec(root)
    found: list[str] = []
    for directory, dirs, files in os.walk(root):
        relative_dir = Path(directory).relative_to(root)
        # Prune ignored directories whole, so a big ignored tree (data/, .venv/) is never walked.
        dirs[:] = [d for d in dirs if not spec.match_file(f"{(relative_dir / d).as_posix()}/")]
        for name in files:
            relative = (relative_dir / name).as_posix()
            if not spec.match_file(relative):
                found.append(relative)
    return sorted(found)


def _member(root: Path, relative: str) -> tuple[tarfile.TarInfo, bytes | None]:
    """A member with fixed owner, time and modes: the bytes depend on the files' contents only."""
    path = root / relative
    info = tarfile.TarInfo(relative)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if path.is_symlink():
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
        return info, None
    data = path.read_bytes()
    info.size, info.mode = len(data), 0o755 if os.access(path, os.X_OK) else 0o644
    return info, data


def too_large_message(files: list[tuple[str, int]], total: int, limit: int) -> str:
    largest = sorted(files, key=lambda f: (-f[1], f[0]))[:LARGEST_SHOWN]
    shown = ", ".join(f"{path} ({size} bytes)" for path, size in largest)
    return (
        f"project is {total} bytes, more than the limit of {limit} bytes; largest files: {shown} "
        "(leave them out with .gpuledgerignore)"
    )


def client_max_bytes() -> int:
    """The client's own cap: ``GPULEDGER_PROJECT_MAX_BYTES``, else the server's default limit."""
    text = os.environ.get(MAX_BYTES_VARIABLE, "")
    return int(text) if text.strip().isdigit() else PROJECT_MAX_BYTES


def pack_project(root: Path, max_bytes: int | None = None) -> PackedProject:
    """Pack ``root``; past ``max_bytes`` (default ``client_max_bytes()``) raise ``ProjectTooLarge`` naming
    the largest files, before reading them."""
    max_bytes = client_max_bytes() if max_bytes is None else max_bytes
    paths = project_paths(root)
    sizes = [(p, 0 if (root / p).is_symlink() else (root / p).stat().st_size) for p in paths]
    total = sum(size for _, size in sizes)
    if total > max_bytes:
        raise ProjectTooLarge(too_large_message(sizes, total, max_bytes))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in paths:
            info, data = _member(root, relative)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    packed = buffer.getvalue()
    if len(packed) > max_bytes:  # headers and padding count too: the server checks the archive's size
        raise ProjectTooLarge(too_large_message(sizes, len(packed), max_bytes))
    return PackedProject(data=packed, files=sizes)
