"""kill -9 a writer at random moments: every acknowledged append survives and the ledger stays sound."""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.domain.events import JobScanned
from ledger.store.schema import connect
from ledger.store.store import read_after
from projections.audit import verify

# The child appends forever: alone, or several writes in one transaction; one line per acknowledged event.
CHILD = """
import sys
from ledger.domain.events import Blob, JobScanned, JobSubmitted
from ledger.store.store import Write
from projections.live import open_store

store, tag, i = open_store(sys.argv[1]), sys.argv[2], 0
def job(n):
    job_id = f"{tag}-{n}"
    return [JobSubmitted(job_id=job_id, user_id="u", competition_id="c", project_id="p", expected_time_s=1,
                         code=Blob(digest="0", size=1)), JobScanned(job_id=job_id, verdict="approved")]
while True:
    if i % 3:
        committed = [store.append(f"job-{tag}-{i}", 0, job(i))]
        i += 1
    else:
        committed = store.execute([Write(decide=lambda _v, n=n: job(n)) for n in range(i, i + 4)])
        i += 4
    for c in committed:
        for r in c.records:
            print(r.position, r.event.job_id, flush=True)
"""


def run_and_kill(db: Path, tag: str, lifetime: float) -> list[tuple[int, str]]:
    """Start the child, SIGKILL it after ``lifetime`` seconds; the (position, job_id) lines it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None
    out = b""
    # The lifetime counts from the child's first acknowledged append: interpreter start-up and imports
    # take about as long as a lifetime on a loaded machine, and a kill before the store exists tests nothing.
    deadline = time.monotonic() + 30.0
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and child.poll() is None:
            if selector.select(left):
                if not out:
                    deadline = time.monotonic() + lifetime
                out += os.read(child.stdout.fileno(), 65536)
    os.kill(child.pid, signal.SIGKILL)
    rest, err = child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL, err.decode()
    lines = (out + rest).decode().splitlines()
    if lines and not (out + rest).endswith(b"\n"):
        lines.pop()  # a line cut in half by the kill was never fully acknowledged
    return [(int(position), job_id) for position, job_id in (line.split() for line in lines)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_nine_loses_no_acknowledged_append(tmp_path: Path) -> None:
    """24 rounds of kill -9 mid-append: acknowledged events are all there, integrity ok, verify empty."""
    db, rng = tmp_path / "ledger.db", random.Random(20261127)
    acknowledged: dict[int, str] = {}
    for round_ in range(24):
        for position, job_id in run_and_kill(db, f"r{round_}", lifetime=rng.uniform(0.3, 0.8)):
            acknowledged[position] = job_id
        conn = connect(db)
        try:
            assert [row[0] for row in conn.execute("PRAGMA integrity_check")] == ["ok"]
            assert verify(conn) == []
            stored = {r.position: r for r in read_after(conn, 0)}
        finally:
            conn.close()
        missing = sorted(set(acknowledged) - set(stored))
        assert missing == [], f"round {round_}: acknowledged positions lost"
        for position, job_id in acknowledged.items():
            assert stored[position].event.job_id == job_id  # type: ignore[union-attr]
        assert all(isinstance(stored[p].event, JobScanned) for p in stored if p % 2 == 0)
    assert len(acknowledged) > 24  # the child did get appends acknowledged between kills
