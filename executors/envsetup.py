"""Builds a job's declared environment on its node, once per cache key (uploaded beside the wrapper).

A single stdlib-only file, like the wrapper, that must keep running on Python 3.8. Run as
``python envsetup.py CACHE JOB_DIR LOG [--index-url U] [--find-links L] [--timeout S]``; it prints one
JSON line: ``{"declared": false}`` or ``{"declared": true, "ok": ..., "digest", "hit", "seconds", "venv"}``.
uv's output is appended to LOG (the attempt's stderr file, which the wrapper appends the job's to, so it
is part of the job's log). The build holds ``CACHE/<digest>.lock``, builds in ``CACHE/.build/<digest>``
beside uv's cache (``stage``) and renames it to ``CACHE/<digest>`` once its ``.ready`` marker is written:
a crashed build is never taken for a cache hit, and two jobs never build one key at once. The directory's
``.last_used`` time drives least-recently-used eviction (``evict``); each attempt that takes it leaves its
name in ``.in_use/``, and counts as a user while its workdir exists.
"""

from __future__ import annotations

import _thread
import fcntl
import hashlib
import os
import sys
import time
from io import BufferedWriter

# contextlib, re and shutil are imported where a build or an eviction needs them: a
# cache hit is mostly this script's start-up, and it needs none of them. For the same reason the command
# line and the JSON line are done by hand (``parse``, ``json_line``): argparse and json import re (with
# enum), gettext and shutil, which took 17 ms of a 41 ms cache hit.

READY = ".ready"
# Each uv step runs in its own bwrap sandbox (``sandboxed``) that may reach the index. Defence in depth
# behind it: uv installs wheels only (no build backend, so no submitted code runs at install time), and a
# requirements file may name packages only: no options (``-r /etc/passwd``, ``--index-url``), paths, URLs
# or direct references.
NO_BUILD = ["--no-build"]
PLAIN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._, -]*\])?\s*([<>=!~]=?\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*(;[^@/\\]*)?$"
LAST_USED = ".last_used"
IN_USE = ".in_use"  # attempts that took the environment, one empty file each (done once its workdir is gone)
UV_CACHE = ".uv-cache"  # uv's package cache, per node, beside the environments: warm builds stay fast
# uv's cache and the environments being built share one directory, bound as CACHE itself into each step's
# sandbox: one mount, so uv hard-links files out of its cache (link(2) fails across two bind mounts).
BUILDS = ".build"
# As the wrapper binds them (executors/wrapper.py SYSTEM_DIRS); of /etc only what DNS and TLS read.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ALLOWED = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/services",
    "/etc/protocols", "/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ca-certificates", "/etc/pki/tls/certs",
    "/etc/ld.so.cache", "/etc/alternatives",
)  # fmt: skip
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
PASSED = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "LANG")


def declaration(job_dir: str) -> tuple[str, list[str]] | None:
    """("requirements" | "lock", the files that define it), or None: the job keeps today's environment."""
    if os.path.isfile(os.path.join(job_dir, "requirements.txt")):
        return "requirements", ["requirements.txt"]
    if all(os.path.isfile(os.path.join(job_dir, f)) for f in ("pyproject.toml", "uv.lock")):
        return "lock", ["pyproject.toml", "uv.lock"]
    return None


def refused_line(path: str) -> str | None:
    """Why the requirements file may not be installed outside the sandbox (the first line that is not a
    plain ``name[extras] specifiers ; marker``), or None."""
    import re

    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#") and not re.match(PLAIN, line):
                return f"requirements.txt line {number}: only package names and versions are allowed ({line[:80]!r})"
    return None


def cache_key(job_dir: str, kind: str, files: list[str]) -> str:
    """The same requirements on the same Python and platform are the same environment."""
    digest = hashlib.sha256(kind.encode() + b"\0")
    for name in files:
        with open(os.path.join(job_dir, name), "rb") as handle:
            digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    # platform.python_version() and platform.machine(), without importing platform
    digest.update(f"{sys.version.split()[0]}|{sys.platform}|{os.uname().machine}".encode())
    return digest.hexdigest()


def find_uv(configured: str) -> str:
    """ENV_UV, else uv beside the node's Python (the server's venv has it), else on PATH."""
    if configured:
        return configured
    beside = os.path.join(os.path.dirname(sys.executable), "uv")
    if os.access(beside, os.X_OK):
        return beside
    import shutil

    return shutil.which("uv") or "uv"


def index_args(args: Args) -> list[str]:
    """ENV_INDEX_URL and ENV_FIND_LINKS; a wheelhouse without an index is an offline set-up."""
    out = ["--index-url", args.index_url] if args.index_url else []
    if args.find_links:
        out += ["--find-links", args.find_links]
        out += [] if args.index_url else ["--no-index"]
    return out


def find_program(name: str) -> str | None:
    """As the wrapper finds bwrap: on our own PATH (what the node user would run), or None."""
    for directory in os.environ.get("PATH", DEFAULT_PATH).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def covered(target: str, dirs: tuple[str, ...] | list[str]) -> bool:
    return any(target == d or target.startswith(d.rstrip("/") + "/") for d in dirs)


def sandboxed(command: list[str], args: Args) -> list[str]:
    """``command`` inside bwrap: the network, and of the host only the system, the node's Python, uv, the
    project and wheelhouse read-only, and ``CACHE/.build`` read-write, bound at ``CACHE``: the sandbox sees
    uv's cache and the environment being built at the paths the job later sees it at (``CACHE/<digest>``,
    bound into the job's sandbox where it was built), never a ready cache entry, other jobs or the
    server's files; HOME is a private tmpfs /tmp."""
    argv = [find_program("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--unshare-all"]
    argv += ["--share-net", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108 - the sandbox's own
    readonly = [p for p in ETC_ALLOWED if os.path.exists(p)]
    readonly += [os.path.realpath(sys.base_prefix), os.path.realpath(sys.executable), args.job_dir]
    readonly += [command[0]] if os.path.isabs(command[0]) else []  # uv
    readonly += [args.find_links] if os.path.isabs(args.find_links) and os.path.exists(args.find_links) else []
    for p in readonly:
        if not covered(p, SYSTEM_DIRS) and not covered(p, readonly[: readonly.index(p)]):
            argv += ["--ro-bind", p, p]
    argv += ["--bind", os.path.join(args.cache, BUILDS), args.cache]
    return [*argv, "--chdir", "/tmp", "--", *command]  # noqa: S108


def step_env(args: Args, venv: str) -> dict[str, str]:
    """Built from nothing but proxies and the locale: HOME in the sandbox's tmpfs, uv's cache per node.
    uv hard-links the installed files out of its cache (the job mounts the environment read-only, so no
    job can change the file every environment built from that wheel shares)."""
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env.update(PATH=DEFAULT_PATH, HOME="/tmp", TMPDIR="/tmp", UV_CACHE_DIR=os.path.join(args.cache, UV_CACHE))  # noqa: S108
    env.update(UV_PROJECT_ENVIRONMENT=venv, UV_PYTHON_DOWNLOADS="never", UV_NO_CONFIG="1", UV_LINK_MODE="hardlink")
    return env


def build_commands(args: Args, kind: str, venv: str) -> list[list[str]]:
    uv = os.path.realpath(find_uv(args.uv))
    make = [uv, "venv", "--quiet", "--python", os.path.realpath(sys.executable), venv]
    if kind == "requirements":
        requirements = os.path.join(args.job_dir, "requirements.txt")
        install = [uv, "pip", "install", "--python", venv + "/bin/python", *NO_BUILD, *index_args(args)]
        return [make, [*install, "-r", requirements]]
    sync = [uv, "sync", "--frozen", "--no-install-project", *NO_BUILD, "--project", args.job_dir, *index_args(args)]
    return [make, sync]


def build(args: Args, kind: str, venv: str, log: BufferedWriter) -> bool:
    """Build ``venv`` in its staging directory (emptied first: a crashed build's leftovers), then move it
    into place; True once every step succeeded."""
    refused = refused_line(os.path.join(args.job_dir, "requirements.txt")) if kind == "requirements" else None
    if refused is not None:
        log.write(f"set-up: refused: {refused}\n".encode())
        return False
    staging = stage(args.cache, os.path.basename(venv))
    env = step_env(args, venv)
    deadline = time.monotonic() + args.timeout
    for command in build_commands(args, kind, venv):
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        code = run_step(sandboxed(command, args), log, env, deadline - time.monotonic())
        if code != 0:
            log.write(f"set-up: {command[1]} {command[2]} failed ({code})\n".encode())
            return False
    open(os.path.join(staging, READY), "wb").close()
    remove(venv)  # a leftover of an older set-up's crashed build
    os.rename(staging, venv)  # whole, .ready included, or not at all
    return True


def stage(cache: str, digest: str) -> str:
    """An empty ``CACHE/.build/<digest>`` (the steps see it as ``CACHE/<digest>``), beside uv's cache."""
    builds = os.path.join(cache, BUILDS)
    os.makedirs(builds, exist_ok=True)
    earlier = os.path.join(cache, UV_CACHE)  # the layout before BUILDS: the same path in the steps, kept
    if os.path.isdir(earlier) and not os.path.exists(os.path.join(builds, UV_CACHE)):
        import contextlib

        with contextlib.suppress(OSError):  # another build moved it first
            os.rename(earlier, os.path.join(builds, UV_CACHE))
    os.makedirs(os.path.join(builds, UV_CACHE), exist_ok=True)
    staging = os.path.join(builds, digest)
    remove(staging)
    os.makedirs(staging)
    return staging


def remove(path: str) -> None:
    """The directory and everything in it, if there (shutil only then: a crash's leftovers are rare)."""
    if os.path.lexists(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def run_step(command: list[str], log: BufferedWriter, env: dict[str, str], timeout_s: float) -> int:
    """The step's exit status (-9: killed at the deadline). Spawned with os.posix_spawnp and killed from a
    bare _thread, not subprocess and threading: their imports (signal's enums, selectors) were 5 to 10 ms
    of a cold build's own cost; and Popen.wait(timeout) polls (up to 50 ms a step)."""
    output = [(os.POSIX_SPAWN_DUP2, log.fileno(), 1), (os.POSIX_SPAWN_DUP2, log.fileno(), 2)]
    try:
        pid = os.posix_spawnp(command[0], command, env, file_actions=output)
    except OSError as e:
        log.write(f"set-up: {e}\n".encode())
        return 127
    running, lock = [True], _thread.allocate_lock()
    _thread.start_new_thread(kill_at_deadline, (pid, max(timeout_s, 0.0), running, lock))
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped: its pid is still its own
    with lock:
        running[0] = False
    status = os.waitpid(pid, 0)[1]
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def kill_at_deadline(pid: int, seconds: float, running: list[bool], lock: _thread.LockType) -> None:
    time.sleep(seconds)
    with lock:
        if running[0]:
            os.kill(pid, 9)  # SIGKILL (the signal module is one more import)


def prepare(args: Args) -> dict[str, object]:
    found = declaration(args.job_dir)
    if found is None:
        return {"declared": False}
    kind, files = found
    digest = cache_key(args.job_dir, kind, files)
    venv = os.path.join(args.cache, digest)
    begun = time.monotonic()
    os.makedirs(args.cache, exist_ok=True)
    with open(venv + ".lock", "ab") as lock, open(args.log, "ab") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        hit = os.path.exists(os.path.join(venv, READY))
        ok = hit or build(args, kind, venv, log)
        if ok:
            mark_used(venv, args.attempt)
    seconds = round(time.monotonic() - begun, 3)
    if ok and args.max_bytes > 0:
        evict(args.cache, args.jobs_dir, args.max_bytes, keep=digest)
    # The venv's python links to this interpreter: the job's sandbox must see its installation too.
    base = os.path.realpath(sys.base_prefix)
    return {"declared": True, "ok": ok, "digest": digest, "hit": hit, "seconds": seconds, "venv": venv, "base": base}


def mark_used(venv: str, attempt: str) -> None:
    """Taken now, by this attempt: the newest for eviction, and never evicted while the attempt runs."""
    with open(os.path.join(venv, LAST_USED), "wb"):
        pass
    os.utime(os.path.join(venv, LAST_USED))
    os.makedirs(os.path.join(venv, IN_USE), exist_ok=True)
    open(os.path.join(venv, IN_USE, attempt), "wb").close()


def tree_files(top: str) -> dict[tuple[int, int], int]:
    """Size of each file under ``top`` by (device, inode): the files of an environment are hard links into
    uv's cache, and one wheel's files are shared by every environment that installed it."""
    found: dict[tuple[int, int], int] = {}
    for root, _dirs, files in os.walk(top):
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            found[(stat.st_dev, stat.st_ino)] = stat.st_size
    return found


def in_use(venv: str, jobs_dir: str) -> bool:
    """An attempt that took it still has its workdir (removed at the end of every path a job takes)."""
    users = os.path.join(venv, IN_USE)
    names = os.listdir(users) if os.path.isdir(users) else []
    return any(os.path.isdir(os.path.join(jobs_dir, name)) for name in names)


def cached(cache: str) -> list[tuple[float, str]]:
    """(last used, directory) of every ready environment, least recently used first."""
    found: list[tuple[float, str]] = []
    for name in os.listdir(cache):
        used = os.path.join(cache, name, LAST_USED)
        if os.path.exists(used):
            found.append((os.path.getmtime(used), os.path.join(cache, name)))
    return sorted(found)


def evict(cache: str, jobs_dir: str, max_bytes: int, keep: str) -> None:
    """Remove least-recently-used environments past ``max_bytes``: never ``keep``, never one in use, and
    only under its lock (so a job taking it at this moment either gets it whole or builds it again).
    A file shared by several environments counts once, and removing one of them frees it only with the last
    (uv's own cache is not counted: it holds each wheel once, however many environments link to it)."""
    found = cached(cache)
    files = {venv: tree_files(venv) for _, venv in found}
    holders: dict[tuple[int, int], int] = {}
    for inodes in files.values():
        for inode in inodes:
            holders[inode] = holders.get(inode, 0) + 1
    total = sum({inode: size for inodes in files.values() for inode, size in inodes.items()}.values())
    for _, venv in found:
        if total <= max_bytes:
            return
        if os.path.basename(venv) != keep and removed(venv, jobs_dir):
            for inode, size in files[venv].items():
                holders[inode] -= 1
                total -= size if holders[inode] == 0 else 0


def removed(venv: str, jobs_dir: str) -> bool:
    """Remove an idle environment under its lock; False if it is being built, taken or used right now."""
    with open(venv + ".lock", "ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        if in_use(venv, jobs_dir):
            return False
        os.remove(os.path.join(venv, READY))  # first: never a hit on a half-removed environment
        remove(venv)
        return True


class Args:
    """The command line: ``CACHE JOB_DIR LOG`` and the options below, each ``--name value``."""

    attempt = "job"
    index_url = ""
    find_links = ""
    timeout = 1800.0
    uv = ""  # ENV_UV
    max_bytes = 0  # ENV_CACHE_MAX_BYTES (0: no eviction)
    jobs_dir = ""  # the attempts' workdirs: one there is still in use

    def __init__(self, cache: str, job_dir: str, log: str) -> None:
        self.cache, self.job_dir, self.log = cache, job_dir, log


def parse(argv: list[str]) -> Args:
    """The line ``environment.prepare`` writes; anything else exits 2 naming the problem, as argparse would."""
    if len(argv) < 3 or len(argv) % 2 == 0:
        raise SystemExit("usage: envsetup CACHE JOB_DIR LOG [--name value ...]")
    args = Args(argv[0], argv[1], argv[2])
    for at in range(3, len(argv), 2):
        flag, value = argv[at], argv[at + 1]
        name = flag[2:].replace("-", "_")
        default = getattr(Args, name, None) if flag.startswith("--") else None
        if not isinstance(default, (str, int, float)):
            raise SystemExit(f"envsetup: unknown option {flag!r}")
        try:
            setattr(args, name, type(default)(value))
        except ValueError:
            raise SystemExit(f"envsetup: {flag} {value!r} is not a number") from None
    return args


def json_line(report: dict[str, object]) -> str:
    """``json.dumps(report)`` of this flat report (strings, booleans, numbers), ASCII-only like json's."""
    items = []
    for key, value in report.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json_string(str(value))
        items.append(f"{json_string(key)}: {text}")
    return "{" + ", ".join(items) + "}"


SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def json_string(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code > 0xFFFF:  # a surrogate pair, as JSON spells a character beyond the BMP
            high, low = divmod(code - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        else:
            out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


def main(argv: list[str]) -> int:
    args = parse(argv)
    os.umask(0o022)  # the job runs as its slot's uid: it reads the environment, never writes it
    print(json_line(prepare(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
