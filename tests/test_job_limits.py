"""Job output and disk limits, the wrapper's notices and its `clean`, at the wrapper itself (no server).

Every hostile job here writes on a 64 MiB tmpfs mounted for the test, so the machine is never at risk.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from wrapper_jobs import PY, follow_command, launch_command, prepare_workdir

from executors.local_process import run_local, stream_local
from executors.protocol import (
    WORK_NAME,
    ExitStatus,
    FrameDecoder,
    FrameKind,
    SandboxSpec,
    clean_command,
    decode_exit_status,
    job_spec_bytes,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("require_sandbox")]
SANDBOX = SandboxSpec(readonly_paths=[sys.prefix, sys.base_prefix])
MiB = 1024 * 1024
# A tree 3000 directories deep (shutil.rmtree dies of RecursionError on it) and a mode-000 directory.
DEEP_AND_CLOSED = (
    "import os\n"
    "os.makedirs('closed/inner'); open('closed/inner/f', 'w').write('x'); os.chmod('closed/inner', 0)\n"
    "os.chmod('closed', 0)\n"
    "os.mkdir('deep'); os.chdir('deep')\n"
    "for _ in range(3000):\n"
    "    os.mkdir('d'); os.chdir('d')\n"
)


@pytest.fixture
def small_fs(tmpfs: Callable[[str], Path]) -> Path:
    """A 64 MiB tmpfs (tests/disks.py)."""
    return tmpfs("64m")


def make_job(root: Path, command: str, *, time_limit_s: float = 30.0, **limits: int) -> Path:
    workdir = root / "job"
    spec = job_spec_bytes(command, time_limit_s, 0.5, {}, SANDBOX, **limits)
    prepare_workdir(workdir, b"", spec)
    return workdir


async def run_to_end(workdir: Path) -> ExitStatus:
    rc, _, err = await run_local(launch_command(PY, workdir), 15)
    assert rc == 0, err
    decoder = FrameDecoder()
    async with asyncio.timeout(40):
        async for chunk in stream_local(follow_command(PY, workdir, 0, 0)):
            for frame in decoder.feed(chunk):
                if frame.kind is FrameKind.STATUS:
                    return decode_exit_status(frame.payload)
    raise AssertionError("no status frame")


async def test_a_job_past_its_disk_limit_is_stopped(small_fs: Path) -> None:
    """A job writing 40 MiB into its workdir under an 8 MiB limit is killed within a few seconds, and
    status.json says disk_limit with the wrapper's notice."""
    workdir = make_job(small_fs, "dd if=/dev/zero of=big bs=1M count=40 2>/dev/null; sleep 30", max_disk_bytes=8 * MiB)
    status = await run_to_end(workdir)
    assert status.disk_limit
    assert not status.output_limit
    assert status.notice is not None
    assert "JOB_MAX_DISK" in status.notice


async def test_a_sparse_file_is_not_disk(small_fs: Path) -> None:
    """A 1 GiB sparse file holds no blocks: it is not counted, and the job ends on its own."""
    workdir = make_job(small_fs, "truncate -s 1G sparse; sleep 3", max_disk_bytes=8 * MiB)
    status = await run_to_end(workdir)
    assert (status.exit_code, status.disk_limit) == (0, False)


async def test_a_job_printing_without_end_is_stopped_and_its_file_bounded(small_fs: Path) -> None:
    """`yes` under a 4 MiB output cap: stopped (output_limit), the stdout file far below the tmpfs."""
    workdir = make_job(small_fs, "yes gpuledger", max_output_bytes=4 * MiB)
    status = await run_to_end(workdir)
    assert status.output_limit
    assert not status.disk_limit
    assert (workdir / "stdout").stat().st_size < 40 * MiB


async def test_a_forged_notice_stays_the_jobs_own_words(small_fs: Path) -> None:
    """A job printing the wrapper's old timeout line and exiting 137 gets no notice: only the wrapper's
    own stop writes one, in status.json."""
    line = "gpuledger: job exceeded its time limit of 1 s and was killed"
    workdir = make_job(small_fs, f"echo '{line}' >&2; exit 137")
    status = await run_to_end(workdir)
    assert (status.notice, status.timed_out) == (None, False)
    assert (workdir / "stderr").read_text().strip() == line


async def test_clean_removes_a_deep_and_closed_tree(small_fs: Path) -> None:
    """`wrapper.py clean` removes what a job left that shutil.rmtree cannot (3000 deep, mode 000)."""
    workdir = make_job(small_fs, f"{PY} -c {shlex.quote(DEEP_AND_CLOSED)}")
    status = await run_to_end(workdir)
    assert status.exit_code == 0
    with pytest.raises((RecursionError, OSError)):
        shutil.rmtree(workdir / WORK_NAME / "deep")
    rc, _, err = await run_local(clean_command(PY, workdir), 60)
    assert rc == 0, err
    assert not workdir.exists()
    assert os.listdir(small_fs) == []
