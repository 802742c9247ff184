"""API benchmark: submit and status throughput against a minimal Litestar app measured in the same run,
and the queue's end-to-end overhead over running the job directly.

    python bench/api.py [--requests 2000] [--concurrency 64] [--runs 20]

Both servers are real ``uvicorn`` processes on loopback with the same settings (one process, no access
log); the minimal app parses the same multipart body and does one raw APSW insert into a WAL,
synchronous=FULL file per submit (one raw select per status GET). Prints one line per figure, the
figure last, with the targets beside the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
SUBMIT_TARGET, OVERHEAD_TARGET_MS = 0.5, 100.0
CODE = b"pass\n"
CONFIG = b"competition_id: bench\nproject_id: bench\nuser_id: admin\nexpected_time: 60\n"
PHASE_LIMIT_S = 60.0  # every load phase stops here even if its request count is not reached


# --- the baseline: a minimal Litestar app ------------------------------------------------------------


def baseline_app(db_path: str) -> Any:
    import apsw
    from litestar import Litestar, Request, get, post
    from litestar.exceptions import NotFoundException

    conn = apsw.Connection(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, code BLOB, config BLOB)")

    @post("/submit", status_code=200)
    async def submit(request: Request[Any, Any, Any]) -> dict[str, Any]:
        form = await request.form()
        code, config = await form["code"].read(), await form["config_file"].read()
        conn.execute("INSERT INTO jobs (code, config) VALUES (?, ?)", (code, config))
        return {"job_id": str(conn.last_insert_rowid()), "status": "pending"}

    @get("/status/{job_id:int}")
    async def status(job_id: int) -> dict[str, Any]:
        row = conn.execute("SELECT id, length(code) FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundException(f"Job {job_id} not found")
        return {"job_id": str(row[0]), "status": "pending", "size": row[1]}

    return Litestar([submit, status], logging_config=None, request_max_body_size=7 * 1024 * 1024)


def run_baseline(port: int, db_path: str) -> None:
    import uvicorn

    # The settings `gpuledger serve` uses (cli/serve.py): one process, no access log, no logging config.
    uvicorn.run(
        baseline_app(db_path),
        host="127.0.0.1",
        port=port,
        log_config=None,
        timeout_graceful_shutdown=30,
        access_log=False,
    )


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: list[str], *, cwd: Path, env: dict[str, str], ready_url: str, stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **env}, stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv} exited: {stderr.read_text()}")
        try:
            if httpx.get(ready_url, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{argv} not ready within 30 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def admin_token(stderr: Path) -> str:
    lines = [line.strip() for line in stderr.read_text().splitlines()]
    marker = next(i for i, line in enumerate(lines) if "shown once" in line)
    return next(line for line in lines[marker + 1 :] if line)


# --- load ------------------------------------------------------------------------------------------


class Load:
    def __init__(
        self, count: int, elapsed: float, latencies: list[float], errors: dict[str, int], bodies: list[dict[str, Any]]
    ) -> None:
        self.count, self.elapsed, self.latencies, self.errors, self.bodies = count, elapsed, latencies, errors, bodies

    @property
    def rate(self) -> float:
        return self.count / self.elapsed

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


async def load(
    base_url: str,
    headers: dict[str, str],
    request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    total: int,
    concurrency: int,
) -> Load:
    """``total`` requests from ``concurrency`` clients at once (bounded by PHASE_LIMIT_S).

    One ``AsyncClient`` (one keep-alive connection) per client: a single shared pool of 64 connections
    spends most of its time in httpcore's pool bookkeeping and would measure the client, not the server.
    Each client sends one untimed request first, so that connecting is not part of the figure.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    bodies: list[dict[str, Any]] = []
    issued = 0
    clients = [
        httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=60, verify=False, limits=httpx.Limits(max_connections=1)
        )
        for _ in range(concurrency)
    ]
    try:
        await asyncio.gather(*(request(client, -1 - n) for n, client in enumerate(clients)))
        started = time.perf_counter()
        deadline = started + PHASE_LIMIT_S

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal issued
            while issued < total and time.perf_counter() < deadline:
                index = issued
                issued += 1
                sent = time.perf_counter()
                try:
                    answer = await request(client, index)
                except httpx.TransportError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - sent)
                if answer.status_code != 200:
                    errors[str(answer.status_code)] = errors.get(str(answer.status_code), 0) + 1
                elif len(bodies) < 5000:
                    bodies.append(answer.json())

        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return Load(len(latencies), elapsed, latencies, errors, bodies)


def multipart(client: httpx.AsyncClient, path: str) -> Awaitable[httpx.Response]:
    return client.post(path, files={"code": ("solution.py", CODE), "config_file": ("config.yaml", CONFIG)})


# --- the figures -----------------------------------------------------------------------------------


def line(label: str, figure: str) -> None:
    print(f"{label}: {figure}", flush=True)


def check(result: Load, what: str) -> None:
    if result.errors:
        raise SystemExit(f"{what}: non-200 answers {result.errors}")


def compare_submit(ours: str, base: str, headers: dict[str, str], total: int, concurrency: int) -> list[str]:
    async def ours_request(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await multipart(client, "/api/submit?wait=false")

    async def base_request(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await multipart(client, "/submit")

    warm = min(200, total)
    check(asyncio.run(load(base, headers, base_request, warm, concurrency)), "baseline warm-up")
    check(asyncio.run(load(ours, headers, ours_request, warm, concurrency)), "gpuledger warm-up")
    minimal = asyncio.run(load(base, headers, base_request, total, concurrency))
    gpuledger = asyncio.run(load(ours, headers, ours_request, total, concurrency))
    check(minimal, "baseline submit")
    check(gpuledger, "gpuledger submit")
    line(
        f"submit wait=false, {concurrency} clients, {gpuledger.count} requests: gpuledger req/s",
        f"{gpuledger.rate:.0f}",
    )
    line(
        f"submit, {concurrency} clients, {minimal.count} requests: minimal Litestar + APSW insert req/s",
        f"{minimal.rate:.0f}",
    )
    line(f"submit ratio gpuledger / minimal (target >= {SUBMIT_TARGET})", f"{gpuledger.rate / minimal.rate:.2f}")
    line("submit p99 latency gpuledger ms", f"{gpuledger.p99_ms:.1f}")
    line("submit p99 latency minimal ms", f"{minimal.p99_ms:.1f}")
    return [body["job_id"] for body in gpuledger.bodies]


def compare_status(
    ours: str, base: str, headers: dict[str, str], job_ids: list[str], total: int, concurrency: int, label: str
) -> None:
    async def ours_request(client: httpx.AsyncClient, index: int) -> httpx.Response:
        return await client.get(f"/api/status/{job_ids[index % len(job_ids)]}")

    async def base_request(client: httpx.AsyncClient, index: int) -> httpx.Response:
        return await client.get(f"/status/{index % 100 + 1}")

    minimal = asyncio.run(load(base, headers, base_request, total, concurrency))
    gpuledger = asyncio.run(load(ours, headers, ours_request, total, concurrency))
    check(minimal, "baseline status")
    check(gpuledger, "gpuledger status")
    line(
        f"status GET{label}, {concurrency} clients, {gpuledger.count} requests: gpuledger req/s",
        f"{gpuledger.rate:.0f}",
    )
    line(
        f"status GET, {concurrency} clients, {minimal.count} requests: minimal Litestar + APSW select req/s",
        f"{minimal.rate:.0f}",
    )
    line(f"status GET{label} ratio gpuledger / minimal", f"{gpuledger.rate / minimal.rate:.2f}")
    line(f"status GET{label} p99 latency gpuledger ms", f"{gpuledger.p99_ms:.1f}")


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def queue_overhead(ours: str, headers: dict[str, str], runs: int) -> None:
    """wait=true submit of ``pass`` end to end, minus ``python3 -c pass`` run directly; p50 of each."""
    direct = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["python3", "-c", "pass"], check=True)
        direct.append(time.perf_counter() - started)
    totals: list[float] = []
    segments: dict[str, list[float]] = {}
    with httpx.Client(base_url=ours, headers=headers, timeout=60) as client:
        for index in range(runs + 2):
            sent_wall, sent = time.time(), time.perf_counter()
            answer = client.post(
                "/api/submit?wait=true", files={"code": ("s.py", CODE), "config_file": ("c.yaml", CONFIG)}
            )
            elapsed, received_wall = time.perf_counter() - sent, time.time()
            body = answer.json()
            if answer.status_code != 200 or body.get("status") != "completed":
                raise SystemExit(f"queue overhead: {answer.status_code} {body}")
            if index < 2:
                continue  # warm-up: first dispatches pay imports
            totals.append(elapsed)
            events = client.get(f"/api/jobs/{body['job_id']}/events").json()["events"]
            at = {e["type"]: seconds(e["recorded_at"]) for e in events}
            node_start = next(e["event"]["started_at_node"] for e in events if e["type"] == "job.started")
            marks = [
                ("request sent → job.submitted committed", sent_wall, at["job.submitted"]),
                ("job.submitted → job.dispatched", at["job.submitted"], at["job.dispatched"]),
                ("job.dispatched → job launched on node", at["job.dispatched"], seconds(node_start)),
                ("job launched on node → job.started committed", seconds(node_start), at["job.started"]),
                ("job.started → job.finished committed", at["job.started"], at["job.finished"]),
                ("job.finished → answer received", at["job.finished"], received_wall),
            ]
            for name, begin, end in marks:
                segments.setdefault(name, []).append(end - begin)
    p50_total, p50_direct = statistics.median(totals), statistics.median(direct)
    line(f"wait=true submit of `pass`, end to end, p50 over {len(totals)} runs ms", f"{p50_total * 1000:.0f}")
    line("python3 -c pass run directly, p50 ms", f"{p50_direct * 1000:.0f}")
    line(f"queue overhead p50 ms (target <= {OVERHEAD_TARGET_MS:g})", f"{(p50_total - p50_direct) * 1000:.0f}")
    for name, values in segments.items():
        line(f"  where: {name}, p50 ms", f"{statistics.median(values) * 1000:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per load phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=20, help="wait=true runs for the queue overhead")
    parser.add_argument("--baseline-app", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_app:
        run_baseline(int(args.baseline_app[0]), args.baseline_app[1])
        return

    with tempfile.TemporaryDirectory(prefix="gpuledger-bench-") as tmp:
        root = Path(tmp)
        ours_port, base_port = free_port(), free_port()
        ours, base = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{base_port}"
        high = 10**9
        env = {
            "GPULEDGER_SERVER_HOST": "127.0.0.1",
            "GPULEDGER_SERVER_PORT": str(ours_port),
            "GPULEDGER_RATE_LIMIT_PER_MINUTE": "100",
            "GPULEDGER_MAX_ACTIVE_JOBS_PER_USER": str(high),
            "GPULEDGER_ENDPOINT_LIMITS": json.dumps({"submit": high, "status": high}),
        }
        server = start(
            [sys.executable, "-m", "cli.main", "serve"],
            cwd=root,
            env=env,
            ready_url=f"{ours}/readyz",
            stderr=root / "serve.err",
        )
        baseline = start(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--baseline-app",
                str(base_port),
                str(root / "baseline.db"),
            ],
            cwd=root,
            env={},
            ready_url=f"{base}/status/0",
            stderr=root / "baseline.err",
        )
        try:
            headers = {"Authorization": f"Bearer {admin_token(root / 'serve.err')}"}
            queue_overhead(ours, headers, args.runs)
            with httpx.Client(base_url=ours, headers=headers) as client:
                finished = [j["job_id"] for j in client.get("/api/jobs", params={"limit": 100}).json()["jobs"]]
                # The flood below must measure the API, not thousands of `pass` jobs running beside it.
                client.post("/api/admin/nodes/local/drain", params={"reason": "benchmark"}).raise_for_status()
            asyncio.run(load(base, headers, lambda c, _: multipart(c, "/submit"), 100, 1))  # rows to select
            compare_status(ours, base, headers, finished, args.requests, args.concurrency, "")
            queued = compare_submit(ours, base, headers, args.requests, args.concurrency)
            compare_status(
                ours,
                base,
                headers,
                queued,
                args.requests,
                args.concurrency,
                f" with {len(queued) + min(200, args.requests)} jobs queued",
            )
        finally:
            stop(server)
            stop(baseline)


if __name__ == "__main__":
    main()
