"""The wrapper notices a job's end when it happens, not at its next poll (bench/sandbox.py times a job
up to its STATUS frame, so every tick of polling counts there)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from executors import wrapper


def test_the_daemon_wakes_when_the_job_exits_not_at_its_next_tick() -> None:
    """ExitWait sleeps up to its timeout but returns once the process exits (a pidfd turns readable)."""
    job = subprocess.Popen(["sleep", "0.1"])
    pause = wrapper.ExitWait(job.pid)
    try:
        assert pause.fd is not None  # Linux 5.3+ with Python 3.9+, as on these machines
        began = time.monotonic()
        pause(10.0)
        assert time.monotonic() - began < 2.0
        assert job.poll() == 0  # woken by its exit, not by anything else
        began = time.monotonic()
        pause(10.0)  # an exited (or reaped) job's pidfd stays readable: no sleep at all
        assert time.monotonic() - began < 1.0
    finally:
        pause.close()
        job.wait()
    assert pause.fd is None


def test_the_launcher_wakes_when_the_daemon_writes_a_record(tmp_path: Path) -> None:
    """A record the daemon writes (write_json_atomic) ends its launcher's wait at once; with nothing
    written the wait lasts its timeout; once the daemon's end is closed the launcher polls."""
    wakeup = wrapper.Wakeup()
    wrapper.LAUNCHER_WAKEUP.append(wakeup)  # as in the daemon
    try:
        wrapper.write_json_atomic(str(tmp_path / "status.json"), {"exit_code": 0})
    finally:
        wrapper.LAUNCHER_WAKEUP.remove(wakeup)
    began = time.monotonic()
    wakeup.wait(10.0)
    assert time.monotonic() - began < 2.0
    began = time.monotonic()
    wakeup.wait(0.2)
    assert time.monotonic() - began >= 0.15
    wakeup.close_writer()  # the daemon has exited
    began = time.monotonic()
    wakeup.wait(10.0)
    assert time.monotonic() - began < 2.0
    assert wakeup.read_fd == -1
    began = time.monotonic()
    wakeup.wait(0.1)
    assert time.monotonic() - began >= 0.08
