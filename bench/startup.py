"""Start-up: seconds from spawning ``gpuledger serve`` to the first ``/livez`` answer and to ``/readyz``
ready, on an empty ledger and on the cached long one, against an interpreter that only imports uvicorn,
measured in the same run.

    PYTHONPATH=. python bench/startup.py [--events 1000000] [--runs 5] [--checkout DIR ...]

Each server is a real ``gpuledger serve`` process on loopback (``tests/server.py``) on a copy of its
ledger (``bench/scale_ledgers.py`` builds and caches the long one); one warm-up start per ledger is not
counted (it fills the page cache). ``--checkout`` also times servers run from another checkout (a
worktree of an earlier commit, say), interleaved start by start with this one's, so that both see the
same machine. Prints medians and their ratio to the baseline's median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import scale_ledgers as built
from scale import serve
from server import OPEN_LIMITS, REPO, Server  # on the path once scale is imported: the suite's fixture

BASELINE = (sys.executable, "-c", "import uvicorn")


def baseline_s() -> float:
    """An interpreter that starts, imports the HTTP server and exits: the floor of any start."""
    began = time.perf_counter()
    subprocess.run(BASELINE, check=True)
    return time.perf_counter() - began


def started(server: Server) -> tuple[float, float]:
    """Seconds from spawn until /livez answers and until /readyz is 200 (one client, polling each 5 ms)."""
    with httpx.Client(base_url=server.url, timeout=1) as client:
        began = time.perf_counter()
        server.spawn()
        live = ready = None
        while ready is None and time.perf_counter() - began < 120:
            try:
                if live is None and client.get("/livez").status_code == 200:
                    live = time.perf_counter() - began
                if live is not None and client.get("/readyz").status_code == 200:
                    ready = time.perf_counter() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
    assert live is not None, "the server never answered /livez"
    assert ready is not None, "the server never became ready"
    return live, ready


def server_for(source: Path | None, root: Path, checkout: Path) -> Server:
    if source is not None:
        server = serve(source, root)
    else:
        root.mkdir(parents=True, exist_ok=True)
        server = Server(root, endpoint_limits=OPEN_LIMITS, code_scanner_quick_mode=True)
    server.env["PYTHONPATH"] = str(checkout)  # the code to time: this checkout's or another's
    return server


def starts(servers: list[Server], runs: int) -> list[tuple[list[float], list[float]]]:
    """Per server, (first /livez, /readyz) seconds of ``runs`` starts after one warm-up, interleaved."""
    timed: list[tuple[list[float], list[float]]] = [([], []) for _ in servers]
    for run in range(runs + 1):
        for server, (lives, readies) in zip(servers, timed, strict=True):
            try:
                live, ready = started(server)
            finally:
                server.stop()
            if run:
                lives.append(live)
                readies.append(ready)
    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="length of the long ledger")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkout", type=Path, action="append", default=[], help="another checkout to time")
    args = parser.parse_args()
    source = built.history_ledger(args.events)
    checkouts = [REPO, *(path.resolve() for path in args.checkout)]
    base = statistics.median(baseline_s() for _ in range(args.runs))
    print(f"  {'python -c ' + repr(BASELINE[2]) + ' (the baseline)':<58} {base:6.2f} s")
    with tempfile.TemporaryDirectory(prefix="gpuledger-startup-") as directory:
        for label, ledger in (("empty ledger", None), (f"{args.events} events", source)):
            roots = [Path(directory) / f"{label.replace(' ', '-')}-{i}" for i in range(len(checkouts))]
            servers = [server_for(ledger, root, code) for root, code in zip(roots, checkouts, strict=True)]
            for code, (lives, readies) in zip(checkouts, starts(servers, args.runs), strict=True):
                live, ready = statistics.median(lives), statistics.median(readies)
                where = f"{label} ({code.name})"
                print(f"  {where + ': first /livez':<58} {live:6.2f} s  ratio {live / base:.2f}  (goal <= 1 s)")
                print(f"  {where + ': /readyz ready':<58} {ready:6.2f} s  ratio {ready / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
