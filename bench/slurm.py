"""Dispatch latency through Slurm: trivial jobs via gpuledger against a bare ``sbatch --wait`` (the floor).

Starts the loopback Slurm of the tests (munged, slurmctld, one slurmd with two fake GPUs) and a real
``gpuledger serve`` with a ``[slurm]`` table, then alternates: one trivial job submitted with
``?wait=true`` (submit to answer, as the client sees it), and one ``sbatch --wait`` of the same kind
of script (a wrapper-free ``python3 -c pass`` with the same --gres) straight to Slurm, and the same
script with sbatch then squeue every 0.1 s (``sbatch --wait`` itself polls slowly, so this is the
tighter floor). Prints the p50 and p90 of each and the ratios. Needs root (the daemons run as root).

    python bench/slurm.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # first: this file is named like tests/slurm.py
from server import OPEN_LIMITS, Server, config_yaml, submit  # noqa: E402 - the test fixtures live in tests/
from slurm import SlurmCluster  # noqa: E402


def bare_sbatch(cluster: SlurmCluster, root: Path) -> float:
    script = root / "bare.sbatch"
    script.write_text("#!/bin/bash\npython3 -c pass\n")
    began = time.perf_counter()
    done = cluster.command(
        "sbatch", "--wait", "--export=NONE", "--gres=gpu:1", "--time=2", f"--output={root}/bare.out", str(script)
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"sbatch --wait failed: {done.stderr}")
    return elapsed


def sbatch_and_poll(cluster: SlurmCluster, root: Path) -> float:
    """A tighter floor: sbatch, then squeue every 0.1 s until Slurm calls the job done."""
    script = root / "bare.sbatch"
    began = time.perf_counter()
    done = cluster.command(
        "sbatch", "--parsable", "--export=NONE", "--gres=gpu:1", "--time=2", f"--output={root}/bare.out", str(script)
    )
    job_id = done.stdout.strip()
    for _ in range(1200):
        state = cluster.command("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return time.perf_counter() - began
        time.sleep(0.1)
    raise RuntimeError(f"Slurm job {job_id} did not end")


def through_gpuledger(server: Server) -> float:
    with server.client(server.admin_token) as client:
        began = time.perf_counter()
        body = submit(client, "pass\n", config_yaml("admin", expected=60), wait=True).json()
        elapsed = time.perf_counter() - began
    if body.get("status") != "completed":
        raise RuntimeError(f"job did not complete: {body}")
    return elapsed


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=10)[q // 10 - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-slurm-") as tmp:
        root = Path(tmp)
        cluster = SlurmCluster(root / "slurm")
        (root / "slurm").mkdir()
        server: Server | None = None
        try:
            cluster.write_config()
            cluster.start()
            (root / "server").mkdir()
            server = Server(
                root / "server",
                slurm={"partition": cluster.partition, "poll_interval_s": 0.5, "conf": str(cluster.conf)},
                remote_root=str(root / "remote"),
                endpoint_limits=OPEN_LIMITS,
            )
            server.start()
            through_gpuledger(server)  # warm-up: first connections, first Slurm scheduling pass
            bare_sbatch(cluster, root)
            ours, floor, polled = [], [], []
            for _ in range(args.jobs):
                ours.append(through_gpuledger(server))
                floor.append(bare_sbatch(cluster, root))
                polled.append(sbatch_and_poll(cluster, root))
        finally:
            if server is not None:
                server.stop()
            cluster.stop()
    print(f"bare sbatch --wait    p50 {p(floor, 50):.3f} s  p90 {p(floor, 90):.3f} s  ({args.jobs} jobs)")
    print(f"sbatch + squeue 0.1 s p50 {p(polled, 50):.3f} s  p90 {p(polled, 90):.3f} s  ({args.jobs} jobs)")
    print(f"gpuledger via Slurm   p50 {p(ours, 50):.3f} s  p90 {p(ours, 90):.3f} s  ({args.jobs} jobs)")
    print(f"ratio (p50)           {p(ours, 50) / p(floor, 50):.2f}x the bare sbatch --wait")
    print(f"ratio (p50)           {p(ours, 50) / p(polled, 50):.2f}x sbatch + squeue polled every 0.1 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
