"""Project archives (a submitted directory, packed by the SDK as a tar): checked once at submit, read
again by the runner that lays the project out in the job's workdir.

Only regular files and directories are laid out. A link is laid out as a copy of the file it names, and
only when that file is in the archive: nothing in an archive can name a path outside the project.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from dataclasses import dataclass

from ledger.domain.errors import ArchiveRefused
from ledger.domain.events import ProjectFile

MAX_MEMBERS = 10_000  # files and directories of one project
MAX_PATH = 1024


@dataclass(frozen=True)
class Project:
    files: dict[str, bytes]  # relative POSIX path -> contents, in the archive's order

    @property
    def manifest(self) -> list[ProjectFile]:
        return [ProjectFile(path=path, size=len(data)) for path, data in self.files.items()]


def _clean_name(name: str) -> str:
    """The member's path, refused if it is absolute, climbs with ``..`` or is not plain text."""
    if not name or len(name) > MAX_PATH or any(ord(c) < 32 for c in name) or "\\" in name:
        raise ArchiveRefused(f"project archive member {name[:200]!r}: not a plain relative path")
    if name.startswith("/"):
        raise ArchiveRefused(f"project archive member {name!r}: an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise ArchiveRefused(f"project archive member {name!r}: leads outside the project ('..')")
    return "/".join(parts)


def _link_target(member: tarfile.TarInfo, name: str) -> str:
    """Where a link points, inside the project; refused when it leads anywhere else."""
    base = posixpath.dirname(name) if member.issym() else ""
    target = posixpath.normpath(posixpath.join(base, member.linkname))
    if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
        raise ArchiveRefused(f"project archive member {name!r}: a link pointing outside the project")
    return target


def read_project(data: bytes) -> Project:
    """The archive's files, or ``ArchiveRefused`` naming the first member that may not be unpacked."""
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveRefused(f"project archive: more than {MAX_MEMBERS} members")
                name = _clean_name(member.name)
                if member.isfile():
                    handle = tar.extractfile(member)
                    files[name] = handle.read() if handle is not None else b""
                elif member.issym() or member.islnk():
                    links[name] = _link_target(member, name)
                elif not member.isdir():
                    raise ArchiveRefused(f"project archive member {name!r}: a device, FIFO or other special file")
    except tarfile.TarError as e:
        raise ArchiveRefused(f"project archive: not a tar archive ({e})") from e
    for name, target in links.items():
        if target not in files:
            raise ArchiveRefused(f"project archive member {name!r}: a link to {target!r}, no file of the project")
        files.setdefault(name, files[target])
    parents = {path.rsplit("/", depth)[0] for path in files for depth in range(1, path.count("/") + 1)}
    for path in files:
        if path in parents:
            raise ArchiveRefused(f"project archive member {path!r}: both a file and a directory")
    return Project(files=files)


def directories(project: Project) -> dict[str, dict[str, bytes]]:
    """The files grouped by directory ("" for the top), the shape a node's upload takes."""
    grouped: dict[str, dict[str, bytes]] = {}
    for path, data in project.files.items():
        directory, name = posixpath.split(path)
        grouped.setdefault(directory, {})[name] = data
    return grouped
