"""Start-up cost of the job sandbox: the same trivial job through the wrapper with and without bwrap.

Each sample is one whole job through the real wrapper protocol on this host: ``run`` (launch, the
daemon, the job ``true``, its end noticed, status streamed back), timed from the command's start to
its STATUS frame. The baseline is the identical job with ``JOB_SANDBOX = "none"``, interleaved with
the sandboxed one in the same run, so the difference is what the sandbox adds per job (namespaces,
binds, the uid drop). Goal: at most 15 ms added at p50.

Then the seccomp filter's own cost, as a ratio against the same sandbox without it, in the same run:
bwrap around `true` (loading the filter) and around a system-call-heavy loop (200,000 `stat`s, each
one through the filter), alternating with and without ``--seccomp``.

Then the job's own cgroup (memory, pids, CPU; ``JOB_CGROUPS``): the same sandboxed job with and
without it, interleaved in the same run, reported as a ratio against the sandbox alone. Goal: at most
5 ms added at p50; the median of the back-to-back differences is printed too (steadier on a shared
host, not the goal's measure). Needs root (or a delegated subtree) for the cgroup; it is made below
``gpuledger-bench`` and removed afterwards.

    python bench/sandbox.py [--jobs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO / "tests"))
from wrapper_jobs import prepare_workdir  # noqa: E402 - the workdir layout helper lives with the tests

from executors import wrapper as node  # noqa: E402 - the wrapper's own command line, as on a node
from executors.local_process import stream_local  # noqa: E402
from executors.protocol import (  # noqa: E402
    FrameDecoder,
    FrameKind,
    Resources,
    SandboxSpec,
    job_spec_bytes,
    run_command,
)
from executors.seccomp import seccomp_program  # noqa: E402

GOAL_ADDED_MS = 15.0
CGROUP_GOAL_ADDED_MS = 5.0
BENCH_CGROUP_PARENT = "gpuledger-bench"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


async def time_to_status(workdir: Path, mode: str) -> float:
    """Seconds from `run` to the STATUS frame of the prepared job in ``workdir`` (which must exit 0)."""
    decoder = FrameDecoder()
    began = time.perf_counter()
    async for chunk in stream_local(run_command(sys.executable, workdir, 0, 0)):
        for frame in decoder.feed(chunk):
            if frame.kind is FrameKind.STATUS:
                elapsed = time.perf_counter() - began
                if b'"exit_code":0' not in frame.payload:
                    raise RuntimeError(f"{mode} job failed: {frame.payload!r}")
                return elapsed
    raise RuntimeError("no status frame")


async def one_job(root: Path, index: int, mode: str) -> float:
    """Seconds from `run` to the STATUS frame of a job running `true`."""
    workdir = root / f"{mode}-{index}"
    sandbox = SandboxSpec(mode=mode)  # type: ignore[arg-type]
    prepare_workdir(workdir, b"", job_spec_bytes("true", 30.0, 1.0, {}, sandbox))
    return await time_to_status(workdir, mode)


async def measure(jobs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"none": [], "bwrap": []}
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-sandbox-") as tmp:
        root = Path(tmp)
        for mode in ("none", "bwrap"):  # warm the page cache and the binaries once
            await one_job(root, -1, mode)
        for index in range(jobs):
            for mode in ("none", "bwrap") if index % 2 else ("bwrap", "none"):
                samples[mode].append(await one_job(root, index, mode))
    return samples


def report(samples: dict[str, list[float]]) -> None:
    base, boxed = samples["none"], samples["bwrap"]
    rows = {
        "p50": (percentile(base, 50), percentile(boxed, 50)),
        "p99": (percentile(base, 99), percentile(boxed, 99)),
        "mean": (statistics.fmean(base), statistics.fmean(boxed)),
    }
    print(f"jobs per mode: {len(base)} (each: run -> launch -> daemon -> `true` -> status frame)")
    for name, (plain, sandboxed) in rows.items():
        print(
            f"{name}: without sandbox {plain * 1000:.1f} ms, with sandbox {sandboxed * 1000:.1f} ms, "
            f"ratio {sandboxed / plain:.2f}, added {(sandboxed - plain) * 1000:.1f} ms"
        )
    added = (rows["p50"][1] - rows["p50"][0]) * 1000
    verdict = "met" if added <= GOAL_ADDED_MS else "MISSED"
    print(f"goal: at most {GOAL_ADDED_MS:g} ms added at p50: {verdict} ({added:.1f} ms)")


SYSCALL_LOOP = "import os; [os.stat('/') for _ in range(200_000)]"
SECCOMP_WORKLOADS = {"start (`true`)": "true", "200k stat calls": f"/usr/bin/python3 -c {shlex.quote(SYSCALL_LOOP)}"}


def bwrap_seconds(workdir: Path, command: str, program: Path | None) -> float:
    """One sandbox as the wrapper builds it, around ``command``, with the filter or without."""
    fds = node.seccomp_fds(str(program)) if program else {}
    try:
        argv = node.sandbox_argv({"mode": "bwrap", "uid": 61000}, str(workdir), command, fds)
        began = time.perf_counter()
        done = subprocess.run(argv, pass_fds=tuple(fds.values()), capture_output=True, check=False)
        elapsed = time.perf_counter() - began
    finally:
        node.close_fds(fds)
    if done.returncode != 0:
        raise RuntimeError(f"sandboxed {command!r} failed: {done.stderr!r}")
    return elapsed


def measure_seccomp(runs: int) -> dict[str, dict[str, list[float]]]:
    """Per workload: seconds without and with the filter, interleaved."""
    samples: dict[str, dict[str, list[float]]] = {w: {"off": [], "on": []} for w in SECCOMP_WORKLOADS}
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-seccomp-") as tmp:
        program, workdir = Path(tmp) / "seccomp.bpf", Path(tmp) / "work"
        program.write_bytes(seccomp_program())
        workdir.mkdir()
        if os.geteuid() == 0:  # the job's uid inside, as hand_over_workdir does
            os.chown(workdir, 61000, 61000)
        for name, command in SECCOMP_WORKLOADS.items():
            bwrap_seconds(workdir, command, program)  # warm up
            for index in range(runs):
                for state in ("off", "on") if index % 2 else ("on", "off"):
                    samples[name][state].append(bwrap_seconds(workdir, command, program if state == "on" else None))
    return samples


def report_seccomp(samples: dict[str, dict[str, list[float]]]) -> None:
    for name, by_state in samples.items():
        off, on = statistics.median(by_state["off"]), statistics.median(by_state["on"])
        print(
            f"seccomp, {name}: p50 without filter {off * 1000:.1f} ms, with {on * 1000:.1f} ms, "
            f"ratio {on / off:.3f} ({len(by_state['on'])} runs each)"
        )


# --- the job's cgroup -------------------------------------------------------------------------------


async def one_cgroup_job(root: Path, index: int, mode: str) -> float:
    """Seconds from `run` to the STATUS frame of a sandboxed `true`, in its own cgroup or not."""
    workdir = root / f"{mode}-{index}"
    resources = Resources(
        cgroups=mode == "cgroup", cgroup_parent=BENCH_CGROUP_PARENT, memory_bytes=256 << 20, max_pids=4096
    )
    prepare_workdir(workdir, b"", job_spec_bytes("true", 30.0, 1.0, {}, SandboxSpec(), resources))
    return await time_to_status(workdir, mode)


async def measure_cgroups(jobs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"sandbox": [], "cgroup": []}
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-cgroup-") as tmp:
        root = Path(tmp)
        for mode in ("sandbox", "cgroup"):  # warm, as above
            await one_cgroup_job(root, -1, mode)
        for index in range(jobs):
            for mode in ("sandbox", "cgroup") if index % 2 else ("cgroup", "sandbox"):
                samples[mode].append(await one_cgroup_job(root, index, mode))
    remove_bench_parent()
    return samples


def remove_bench_parent() -> None:
    """The jobs' cgroups are gone with them; their parent (v2, or one per v1 controller) is ours to remove."""
    top = Path("/sys/fs/cgroup")
    for parent in (top / BENCH_CGROUP_PARENT, *top.glob(f"*/{BENCH_CGROUP_PARENT}")):
        with contextlib.suppress(OSError):
            parent.rmdir()


def report_cgroups(samples: dict[str, list[float]]) -> None:
    base, confined = samples["sandbox"], samples["cgroup"]
    print(f"\njobs per mode: {len(base)} (sandboxed `true`, without and with its own cgroup)")
    for name, q in (("p50", 50.0), ("p99", 99.0)):
        plain, grouped = percentile(base, q), percentile(confined, q)
        print(
            f"{name}: sandbox alone {plain * 1000:.1f} ms, with cgroup {grouped * 1000:.1f} ms, "
            f"ratio {grouped / plain:.2f}, added {(grouped - plain) * 1000:.1f} ms"
        )
    # Each index ran its two jobs back to back: their difference is free of the load's drift over the run.
    paired = statistics.median(grouped - plain for plain, grouped in zip(base, confined, strict=True)) * 1000
    print(f"paired: median of the {len(base)} back-to-back differences {paired:.1f} ms (load drift cancels)")
    added = (percentile(confined, 50) - percentile(base, 50)) * 1000
    verdict = "met" if added <= CGROUP_GOAL_ADDED_MS else "MISSED"
    print(f"goal: at most {CGROUP_GOAL_ADDED_MS:g} ms added by the cgroup at p50: {verdict} ({added:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs per mode (default 50)")
    args = parser.parse_args()
    report(asyncio.run(measure(args.jobs)))
    report_seccomp(measure_seccomp(max(5, args.jobs // 5)))
    report_cgroups(asyncio.run(measure_cgroups(args.jobs)))


if __name__ == "__main__":
    main()
