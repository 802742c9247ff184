"""What a sandboxed job can see of the server's host: the one rule, and the start-up check built on it.

Kept apart from executors.sandbox so that ``gpuledger serve`` can check before it binds its port
without importing the executors (the check needs only paths and the wrapper's list of binds).
"""

from __future__ import annotations

import os
from pathlib import Path

from executors import wrapper
from ledger.store.settings import Settings


def holds(bound: str, private: str) -> bool:
    """Whether ``private`` is ``bound`` or lies under it (symlinks resolved): the one visibility rule."""
    root, target = Path(bound).resolve(), Path(private).resolve()
    return target == root or root in target.parents


def secrets_in_view(settings: Settings, config_file: str | None) -> str | None:
    """None, or one line naming the server's secret that a sandboxed job would see, and the fix."""
    if settings.sandbox.mode == "none":
        return None  # everything is in view then, and the server says so (DISABLED_WARNING)
    secrets = {
        "SSH_KEY_FILE": settings.ssh.key_file,
        "SSH_KNOWN_HOSTS": settings.ssh.known_hosts,
        "the config file": config_file,
        "DATABASE_PATH": settings.storage.database_path,
        "JOBS_DIR": settings.storage.jobs_dir,
    }
    etc = [str(p) for prefix in wrapper.ETC_PREFIXES for p in Path("/etc").glob(prefix + "*")]
    bound = [*wrapper.SYSTEM_DIRS, *wrapper.ETC_ALLOWED, *etc, *settings.sandbox.readonly_paths]
    for name, secret in secrets.items():
        seen = [b for b in bound if secret and os.path.exists(b) and holds(b, secret)]
        if seen:
            fix = "move it elsewhere (e.g. under /var/lib/gpuledger)"
            if seen[0] in settings.sandbox.readonly_paths:
                fix += f" or drop {seen[0]} from JOB_READONLY_PATHS"
            where = f"it lies under {seen[0]}, which the sandbox binds in"
            return f"{name} ({secret}) would be readable by every job: {where}; {fix}"
    return None
