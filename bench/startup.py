"""Start-up: seconds from spawning ``gpuledger serve`` to the first ``/livez`` answer and to ``/readyz``
ready, on an empty ledger and on the cached long one, against an interpreter that only imports uvicorn,
measured in the same run.

    PYTHONPATH=. python bench/startup.py [--events 1000000] [--runs 5]

Each server is a real ``gpuledger serve`` process on loopback (``tests/server.py``) on a copy of its
ledger (``bench/scale_ledgers.py`` builds and caches the long one); one warm-up start per ledger is not
counted (it fills the page cache). Prints medians and their ratio to the baseline's median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scale_ledgers as built
from scale import serve, started
from server import OPEN_LIMITS, Server  # on the path once scale is imported: the suite's fixture

BASELINE = (sys.executable, "-c", "import uvicorn")


def baseline_s() -> float:
    """An interpreter that starts, imports the HTTP server and exits: the floor of any start."""
    began = time.perf_counter()
    subprocess.run(BASELINE, check=True)
    return time.perf_counter() - began


def starts(source: Path | None, root: Path, runs: int) -> tuple[list[float], list[float]]:
    """(first /livez, /readyz) seconds of ``runs`` starts after one warm-up, all on one copy."""
    server = serve(source, root) if source is not None else _empty(root)
    lives, readies = [], []
    for run in range(runs + 1):
        try:
            live, ready = started(server)
        finally:
            server.stop()
        if run:
            lives.append(live)
            readies.append(ready)
    return lives, readies


def _empty(root: Path) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    return Server(root, endpoint_limits=OPEN_LIMITS, code_scanner_quick_mode=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="length of the long ledger")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    source = built.history_ledger(args.events)
    base = statistics.median(baseline_s() for _ in range(args.runs))
    print(f"  {'python -c ' + repr(BASELINE[2]) + ' (the baseline)':<44} {base:6.2f} s")
    with tempfile.TemporaryDirectory(prefix="gpuledger-startup-") as directory:
        for label, ledger in (("empty ledger", None), (f"{args.events} events", source)):
            lives, readies = starts(ledger, Path(directory) / label.replace(" ", "-"), args.runs)
            live, ready = statistics.median(lives), statistics.median(readies)
            print(f"  {label + ': first /livez':<44} {live:6.2f} s  ratio {live / base:.2f}  (goal <= 1 s)")
            print(f"  {label + ': /readyz ready':<44} {ready:6.2f} s  ratio {ready / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
