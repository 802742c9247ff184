"""A job's declared environment (``requirements.txt``, or ``pyproject.toml`` with ``uv.lock``), made
ready on its node before the wrapper launches it: ``envsetup.py`` builds it with uv into the node's
cache, or finds it there, and the job then runs with that venv first on PATH, mounted read-only.

The set-up runs as the node's job user (the wrapper's user), each uv step in its own bwrap sandbox
(envsetup.sandboxed), with ENV_SETUP_TIMEOUT_S: it may reach ENV_INDEX_URL / ENV_FIND_LINKS while the
job keeps JOB_NETWORK.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from importlib import resources

import msgspec

from executors import protocol as wp
from executors.errors import EnvSetupFailed, RemoteCommandFailed
from executors.transport import Transport
from ledger.domain.jobs import JobState
from ledger.store.settings import EnvSettings

SETUP_NAME = "envsetup.py"
SETUP_SOURCE: bytes = resources.files(__package__ or "executors").joinpath(SETUP_NAME).read_bytes()
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"  # the wrapper's DEFAULT_PATH, behind the venv's bin


class EnvReady(msgspec.Struct, frozen=True, kw_only=True):
    """What ``envsetup.py`` reports for a declared environment that is ready."""

    digest: str
    hit: bool
    seconds: float
    venv: str
    base: str = ""  # the installation of the interpreter the venv's python links to


def declares(job: JobState) -> bool:
    """Whether the job's project declares an environment (read from the manifest, not the archive)."""
    names = {f.path for f in job.project_files}
    return "requirements.txt" in names or {"pyproject.toml", "uv.lock"} <= names


def cache_dir(remote_root: str) -> str:
    return f"{remote_root.rstrip('/')}/envs"


async def prepare(
    transport: Transport, settings: EnvSettings, remote_root: str, workdir: str, attempt_key: str
) -> EnvReady:
    """Build or find the environment; raises EnvSetupFailed (uv's output is in the attempt's stderr)."""
    await transport.put_files(workdir, {SETUP_NAME: SETUP_SOURCE})
    argv = [transport.python, "-I", "-S", posixpath.join(workdir, SETUP_NAME), cache_dir(remote_root)]
    argv += [posixpath.join(workdir, wp.WORK_NAME), posixpath.join(workdir, "stderr"), "--attempt", attempt_key]
    argv += ["--index-url", settings.index_url, "--find-links", settings.find_links]
    argv += ["--timeout", str(settings.setup_timeout_s), "--max-bytes", str(settings.cache_max_bytes)]
    argv += ["--jobs-dir", posixpath.dirname(workdir.rstrip("/")), "--uv", settings.uv]
    begun = time.monotonic()
    code, out, err = await transport.run(shlex.join(argv), timeout=settings.setup_timeout_s + 60)
    if code != 0:  # the script itself failed (no room for the cache, say): retrying the job cannot help
        failure = RemoteCommandFailed("envsetup.py", code, err)
        raise EnvSetupFailed(f"the environment set-up failed: {failure}", seconds=time.monotonic() - begun)
    report = msgspec.json.decode(out.strip().splitlines()[-1])
    if not report.get("ok"):
        raise EnvSetupFailed(
            "the declared environment could not be built (uv's output is in the job's log)",
            seconds=float(report.get("seconds") or time.monotonic() - begun),
            digest=str(report.get("digest") or ""),
        )
    return msgspec.convert(report, EnvReady, strict=False)


def job_env(ready: EnvReady) -> dict[str, str]:
    """The job runs the venv's python first on PATH, as an activated venv would."""
    return {"VIRTUAL_ENV": ready.venv, "PATH": f"{ready.venv}/bin:{JOB_PATH}"}


def with_venv(sandbox: wp.SandboxSpec, ready: EnvReady) -> wp.SandboxSpec:
    """The sandbox with the venv and its interpreter's installation bound in read-only (the job never
    writes to the shared cache; the wrapper skips a path its system directories already cover)."""
    extra = [ready.venv, *([ready.base] if ready.base else [])]
    return msgspec.structs.replace(sandbox, readonly_paths=[*sandbox.readonly_paths, *extra])
