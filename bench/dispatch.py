"""Dispatch latency over SSH: trivial jobs through a real jump host, against a raw ``true`` (the floor).

Starts the real-sshd cluster of the tests (a jump host and two nodes on loopback) and a real
``gpuledger serve`` subprocess, submits ``--jobs`` trivial jobs one after another and reads the time
from submit to ``job.started`` and to ``job.finished`` off the events' ``recorded_at``. The floor,
measured in the same run and interleaved with the jobs, is asyncssh running ``true`` on a node
through the same jump host on an already open connection. Target: submit→finished p50 at most 10 times the floor.

    python bench/dispatch.py [--jobs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncssh
import httpx

# The loopback sshd and server fixtures live with the tests.
REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO / "tests"))
from server import Server, config_yaml  # noqa: E402 - the test fixtures live in tests/
from sshd import SshCluster  # noqa: E402

TARGET_RATIO = 10.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def server_settings(cluster: SshCluster) -> dict[str, object]:
    nodes = [
        {"name": n.name, "host": n.host, "port": n.port, "user": cluster.user, "container": f"gpu-node-{i}"}
        for i, n in enumerate(cluster.nodes)
    ]
    return {
        "jump_host": cluster.jump.host,
        "jump_port": cluster.jump.port,
        "jump_user": cluster.user,
        "gpu_user": cluster.user,
        "ssh_key_file": str(cluster.key_file),
        "ssh_known_hosts": str(cluster.known_hosts),
        "ssh_keepalive_s": 5.0,
        "nodes": nodes,
        "remote_root": str(cluster.root / "remote"),
        "code_scanner_quick_mode": True,
        "rate_limit_per_minute": 100,
        "max_active_jobs_per_user": 100,
        "endpoint_limits": {"submit": 100000, "status": 100000, "results": 100000, "cancel": 1000, "jobs": 1000},
    }


class Floor:
    """asyncssh on an open connection to node-0 through the jump host: the physical floor of one command."""

    def __init__(self, cluster: SshCluster) -> None:
        self.cluster = cluster
        self.samples: list[float] = []
        self.jump: asyncssh.SSHClientConnection | None = None
        self.node: asyncssh.SSHClientConnection | None = None

    async def open(self) -> None:
        options = {
            "known_hosts": str(self.cluster.known_hosts),
            "client_keys": [str(self.cluster.key_file)],
            "username": self.cluster.user,
            "config": None,
            "agent_path": None,
        }
        self.jump = await asyncssh.connect(self.cluster.jump.host, self.cluster.jump.port, **options)
        node = self.cluster.nodes[0]
        self.node = await asyncssh.connect(node.host, node.port, tunnel=self.jump, **options)
        await self.sample()  # warm up; not counted
        self.samples.clear()

    async def sample(self) -> None:
        assert self.node is not None
        started = time.perf_counter()
        await self.node.run("true", check=True)
        self.samples.append(time.perf_counter() - started)

    async def close(self) -> None:
        for conn in (self.node, self.jump):
            if conn is not None:
                conn.close()
                await conn.wait_closed()


def _at(entry: dict[str, object]) -> float:
    return datetime.fromisoformat(str(entry["recorded_at"]).replace("Z", "+00:00")).timestamp()


async def run_jobs(server: Server, floor: Floor, jobs: int) -> dict[str, list[float]]:
    gaps: dict[str, list[float]] = {k: [] for k in ("started", "finished", "dispatch", "launch", "run", "client")}
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as client:
        for _ in range(jobs):
            sent = time.perf_counter()
            answer = await client.post(
                "/api/submit?wait=true",
                files={"code": ("solution.py", b"pass\n"), "config_file": ("config.yaml", config_yaml("admin"))},
            )
            gaps["client"].append(time.perf_counter() - sent)
            body = answer.json()
            if body.get("status") != "completed":
                raise SystemExit(f"job did not complete: {body}")
            events = (await client.get(f"/api/jobs/{body['job_id']}/events")).json()["events"]
            at = {e["type"]: _at(e) for e in events}
            gaps["started"].append(at["job.started"] - at["job.submitted"])
            gaps["finished"].append(at["job.finished"] - at["job.submitted"])
            gaps["dispatch"].append(at["job.dispatched"] - at["job.submitted"])
            gaps["launch"].append(at["job.started"] - at["job.dispatched"])
            gaps["run"].append(at["job.finished"] - at["job.started"])
            await floor.sample()  # interleaved, so the floor sees the same machine load as the jobs
    return gaps


def report(gaps: dict[str, list[float]], floor: list[float], jobs: int) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:.1f}"

    floor_p50 = statistics.median(floor)
    lines = [
        ("jobs", str(jobs)),
        ("floor: asyncssh `true` via the jump host on an open connection, p50 ms", ms(floor_p50)),
        ("floor p99 ms", ms(percentile(floor, 99))),
        ("submit -> job.started p50 ms", ms(statistics.median(gaps["started"]))),
        ("submit -> job.started p99 ms", ms(percentile(gaps["started"], 99))),
        ("submit -> job.finished p50 ms", ms(statistics.median(gaps["finished"]))),
        ("submit -> job.finished p99 ms", ms(percentile(gaps["finished"], 99))),
        ("breakdown: submit -> job.dispatched p50 ms", ms(statistics.median(gaps["dispatch"]))),
        ("breakdown: job.dispatched -> job.started p50 ms", ms(statistics.median(gaps["launch"]))),
        ("breakdown: job.started -> job.finished p50 ms", ms(statistics.median(gaps["run"]))),
        ("client: POST submit?wait=true round trip p50 ms", ms(statistics.median(gaps["client"]))),
        ("ratio: submit -> job.started p50 / floor p50", f"{statistics.median(gaps['started']) / floor_p50:.2f}"),
        ("ratio: submit -> job.finished p50 / floor p50", f"{statistics.median(gaps['finished']) / floor_p50:.2f}"),
        ("target: submit -> job.finished p50 / floor p50 at most", f"{TARGET_RATIO:g}"),
        ("target met (1 yes, 0 no)", "1" if statistics.median(gaps["finished"]) <= TARGET_RATIO * floor_p50 else "0"),
    ]
    for label, value in lines:
        print(f"{label}: {value}")


async def bench(jobs: int, root: Path) -> None:
    (root / "sshd").mkdir()
    cluster = SshCluster(root / "sshd")
    server: Server | None = None
    floor = Floor(cluster)
    try:
        cluster.heal()
        (root / "server").mkdir()
        server = Server(root / "server", **server_settings(cluster))
        server.start()
        await floor.open()
        gaps = await run_jobs(server, floor, jobs)
        report(gaps, floor.samples, jobs)
    finally:
        await floor.close()
        if server is not None:
            server.stop()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="sequential trivial jobs (default 100)")
    args = parser.parse_args()
    with contextlib.suppress(PermissionError):  # sshd's privilege separation needs it; only root can make it
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-") as tmp:
        asyncio.run(bench(args.jobs, Path(tmp)))


if __name__ == "__main__":
    main()
