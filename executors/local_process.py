"""Runs wrapper protocol command strings on this host: the local twin of an SSH connection.

`run_local` mirrors asyncssh's `conn.run(cmd, timeout=...)` and `stream_local` its
`conn.create_process(cmd)` stdout, so the runner above can treat both transports alike.
No ledger imports: appending events is the runner's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncGenerator

READ_CHUNK = 256 * 1024

# The wrapper commands need a PATH to find bash, bwrap and setpriv, and nothing else of the server's
# environment (the wrapper runs with -I; the job's environment is built by the wrapper from job.json).
WRAPPER_ENV_NAMES = ("PATH", "LANG", "LC_ALL")


def wrapper_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """An allowlist of the server's environment: a secret under any name stays in the server."""
    source = os.environ if environ is None else environ
    return {name: source[name] for name in WRAPPER_ENV_NAMES if name in source}


async def _start(cmd: str) -> asyncio.subprocess.Process:
    # A session of its own, so that stopping the command stops everything it started in the foreground;
    # the wrapper's daemon has already left for a session of its own and is not touched.
    return await asyncio.create_subprocess_shell(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=wrapper_environment(),
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


# The timeout parameter mirrors asyncssh conn.run(timeout=...), so runners call both transports alike.
async def run_local(cmd: str, timeout: float | None) -> tuple[int, bytes, bytes]:
    """Run `cmd` under /bin/sh; (exit status, stdout, stderr). Raises TimeoutError after `timeout`."""
    proc = await _start(cmd)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:  # timeout or cancellation: never leave the command running behind us
        await asyncio.shield(_stop(proc))
        raise
    assert proc.returncode is not None  # communicate() waited for it
    return proc.returncode, out, err


async def stream_local(cmd: str) -> AsyncGenerator[bytes, None]:
    """Yield stdout chunks of a long-running command (e.g. `follow`) as they arrive.

    Raises CalledProcessError (with stderr) if it exits non-zero. Closing the generator early
    (`contextlib.aclosing`, or breaking out of `async for` and letting it be collected) kills the command.
    """
    proc = await _start(cmd)
    assert proc.stdout is not None
    assert proc.stderr is not None
    # Drained alongside, so a chatty stderr can never fill its pipe and stall stdout.
    stderr_task = asyncio.ensure_future(proc.stderr.read())
    try:
        while chunk := await proc.stdout.read(READ_CHUNK):
            yield chunk
        returncode = await proc.wait()
        err = await stderr_task
    finally:
        stderr_task.cancel()
        await asyncio.shield(_stop(proc))
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, cmd, stderr=err)
