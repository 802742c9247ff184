"""Reads at scale: the issue's table at 10 k / 100 k / 1 M events and a 25 k queue, each figure as a ratio
against its baseline measured in the same run (``/livez``, raw read+decode, raw APSW batched), its goal,
and whether it is met.

    PYTHONPATH=. python bench/scale.py [--quick] [--sizes 10000,100000,1000000] [--pending 25000]

Ledgers are built with raw inserts and cached in the temp dir (``bench/scale_ledgers.py``); each server
is a real ``gpuledger serve`` process on loopback (``tests/server.py``), on a copy of the cached file.
``--quick`` runs 10 k and 100 k events, fewer requests, one writer run. Prints one line per figure and a
closing list of the goals missed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import scale_ledgers as built
import uvicorn
from appends import BASELINE_EVENTS, baseline_inserts, concurrent_appends, read_and_decode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from server import OPEN_LIMITS, Server  # noqa: E402 - the test suite's server fixture, reused

from cli.serve import EVENT_LOOP, GIL_SWITCH_INTERVAL_S  # noqa: E402
from ledger.store.schema import connect  # noqa: E402

MISSED: list[str] = []


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def line(what: str, value: str, ratio: float | None = None, goal: str = "", met: bool | None = None) -> None:
    """One row: the figure, its ratio against the baseline, the goal and the verdict."""
    tail = f"  ratio {ratio:.2f}" if ratio is not None else ""
    verdict = "" if met is None else ("  met" if met else "  MISSED")
    print(f"  {what:<58} {value:>14}{tail}{'  (goal ' + goal + ')' if goal else ''}{verdict}", flush=True)
    if met is False:
        MISSED.append(f"{what}: {value}{tail} (goal {goal})")


def timings(call: Callable[[], httpx.Response], count: int) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        answer = call()
        out.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text[:300]
    return out


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def rss_mib(server: Server) -> float:
    assert server.proc is not None
    for text in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) / 1024
    return 0.0


def serve(source: Path, root: Path) -> Server:
    built.working_copy(source, root)
    server = Server(root, endpoint_limits=OPEN_LIMITS, code_scanner_quick_mode=True, max_active_jobs_per_user=10**6)
    server.admin_token = built.ADMIN_SECRET
    return server


def started(server: Server) -> tuple[float, float]:
    """Seconds from spawn until /livez answers and until /readyz is 200."""
    began = time.perf_counter()
    server.spawn()
    live = ready = None
    while ready is None and time.perf_counter() - began < 120:
        try:
            if live is None and httpx.get(f"{server.url}/livez", timeout=1).status_code == 200:
                live = time.perf_counter() - began
            if live is not None and httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                ready = time.perf_counter() - began
        except httpx.HTTPError:
            time.sleep(0.01)
    assert live is not None, "the server never answered /livez"
    assert ready is not None, "the server never became ready"
    return live, ready


def history_rows(
    size: int, scratch: Path, reps: int, startup: bool, jobs_ratios: dict[int, float], panel_ratios: dict[int, float]
) -> None:
    source = built.history_ledger(size)
    print(f"history ledger, {size} events", flush=True)
    server = serve(source, scratch / f"h{size}")
    live_s, ready_s = started(server)
    try:
        with server.client(server.admin_token, timeout=120) as client:
            livez = statistics.median(timings(lambda: client.get("/livez"), reps * 20))
            line("/livez p50 (the baseline)", ms(livez))
            rss = rss_mib(server)
            middle = str(size // 2)
            fresh = iter(range(size // 2, 0, -1))  # a new position each time: the as-of pool caches documents
            asof = statistics.median(
                timings(lambda: client.get("/api/dashboard", params={"as_of": str(next(fresh))}), reps)
            )
            line("/api/dashboard?as_of=<middle> p50", ms(asof), asof / livez, "<= 100 ms", asof <= 0.1)
            after = rss_mib(server)
            line("server RSS after load", f"{rss:.0f} MiB", None, "<= 150 MiB", rss <= 150)
            line("server RSS growth after as-of", f"{after - rss:+.0f} MiB", None, "<= +50 MiB", after - rss <= 50)
            alone, during = livez_during(client, server, middle)
            line("/livez p99 alone (the baseline)", ms(alone))
            line("/livez p99 while as-of requests run", ms(during), during / alone, "<= alone + 10 ms",
                 during - alone <= 0.010)  # fmt: skip
            dashboard_rows(client, livez, reps * 4, "")
            panel_ratios[size] = web_panel_rows(client, livez, reps * 2, goal=False)
            # The same status read as the queue rows', with nothing queued: what reading a job costs by itself.
            some_job = client.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]["job_id"]
            status = timings(lambda: client.get(f"/api/status/{some_job}"), reps * 40)
            alone = timings(lambda: client.get("/livez"), reps * 40)
            line("status GET throughput, nothing queued (not a goal)", f"{1 / statistics.mean(status):.0f} /s",
                 statistics.mean(alone) / statistics.mean(status))  # fmt: skip
            jobs = statistics.median(timings(lambda: client.get("/api/jobs", params={"limit": 50}), reps * 4))
            jobs_ratios[size] = jobs / livez
            line("admin /api/jobs?limit=50 p50", ms(jobs), jobs / livez)
    finally:
        server.stop()
    if startup:
        startup_rows(source, scratch, size, (live_s, ready_s))


def dashboard_rows(client: httpx.Client, livez: float, reps: int, label: str) -> None:
    dash = statistics.median(timings(lambda: client.get("/api/dashboard"), reps))
    body = client.get("/api/dashboard")
    size_kb, active = len(body.content) / 1024, body.json()["active_jobs_total"]
    line(f"live /api/dashboard p50 ({active} active{label})", ms(dash), dash / livez, "<= 5 x livez", dash <= 5 * livez)
    line("live /api/dashboard size", f"{size_kb:.1f} KB", None, "<= 100 KB", size_kb <= 100)


WEB_PANELS = ("queue", "lanes", "utilisation", "usage", "jobs", "nodes")


def web_panel_rows(client: httpx.Client, livez: float, reps: int, goal: bool) -> float:
    """The web dashboard's panels (the page fetches each on every ledger change); returns the slowest
    one's ratio to ``/livez``. At the 25 k queue they are held to the live dashboard's goal (the queue's
    length must not show); over history their cost is that of the last hour's jobs (the lanes draw at
    most 500), so there the goal is only that it does not grow with the history (``flat_row``)."""
    times, sizes = {}, {}
    for panel in WEB_PANELS:
        path = f"/dashboard/data/{panel}"
        times[panel] = statistics.median(timings(lambda: client.get(path), reps))  # noqa: B023 - called at once
        sizes[panel] = len(client.get(path).content) / 1024
    slowest, largest = max(times, key=times.__getitem__), max(sizes, key=sizes.__getitem__)
    print(f"  (web panels p50: {', '.join(f'{name} {ms(t)}' for name, t in times.items())})")
    fast, small = times[slowest] <= 5 * livez, sizes[largest] <= 100
    target = "<= 5 x livez" if goal else ""
    line(f"web dashboard panels: slowest p50 ({slowest}){'' if goal else ' (not a goal)'}", ms(times[slowest]),
         times[slowest] / livez, target, fast if goal else None)  # fmt: skip
    line(f"web dashboard panels: largest ({largest}){'' if goal else ' (not a goal)'}", f"{sizes[largest]:.1f} KB",
         None, "<= 100 KB" if goal else "", small if goal else None)  # fmt: skip
    return times[slowest] / livez


def _keep_asking(url: str, token: str, as_of: str, stop: Any) -> None:
    """One as-of request after another, from a process of its own (a thread would share the timing
    client's GIL and delay its /livez reads itself)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as other:
        position = int(as_of)
        while not stop.is_set():  # a new position each time: the as-of pool caches documents
            other.get("/api/dashboard", params={"as_of": str(position)})
            position -= 1


def livez_during(client: httpx.Client, server: Server, as_of: str) -> tuple[float, float]:
    """p99 of /livez alone, then while another process keeps one as-of request in flight."""
    alone = p(timings(lambda: client.get("/livez"), 300), 99)
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    asker = context.Process(target=_keep_asking, args=(server.url, server.admin_token, as_of, stop))
    asker.start()
    try:
        time.sleep(0.3)
        return alone, p(timings(lambda: client.get("/livez"), 300), 99)
    finally:
        stop.set()
        asker.join()


STARTS = 3  # start-up figures are the median of this many starts (one start swings by a third here)


def startup_rows(source: Path, scratch: Path, size: int, first: tuple[float, float]) -> None:
    conn = connect(source)
    rows, raw = read_and_decode(conn)
    conn.close()
    line(f"raw read + decode of {rows} events (the baseline)", f"{raw:.2f} s")
    warm = serve(source, scratch / f"warm{size}")
    starts = [first]
    for _ in range(STARTS - 1):  # the same ledger again: its tables and snapshot are as the first left them
        try:
            starts.append(started(warm))
        finally:
            warm.stop()
    live_s, ready_s = (statistics.median(s[i] for s in starts) for i in (0, 1))
    spread = f"{min(s[1] for s in starts):.2f}..{max(s[1] for s in starts):.2f} s"
    line(f"start-up: first /livez answer (median of {STARTS})", f"{live_s:.2f} s", None, "<= 1 s", live_s <= 1)
    line(f"start-up until /readyz, with tables (median of {STARTS})", f"{ready_s:.2f} s", ready_s / raw,
         "<= 1.5 s", ready_s <= 1.5)  # fmt: skip
    print(f"    (each start: {spread})")
    cold = []
    for run in range(STARTS):  # a fresh copy each time: a start rebuilds the tables it finds missing
        server = serve(source, scratch / f"cold{size}-{run}")
        db = connect(server.root / "gpuledger.db")
        with db:
            for table in ("proj_jobs", "proj_users", "proj_nodes", "proj_tokens", "projection_checkpoints"):
                db.execute(f"DELETE FROM {table}")
        db.close()
        try:
            cold.append(started(server))
        finally:
            server.stop()
    live_s, ready_s = (statistics.median(s[i] for s in cold) for i in (0, 1))
    line(f"start-up until /readyz, tables missing (median of {STARTS})", f"{ready_s:.2f} s", ready_s / raw,
         "<= 4 s", ready_s <= 4)  # fmt: skip
    line("start-up, tables missing: first /livez answer", f"{live_s:.2f} s", None, "<= 1 s", live_s <= 1)


ROUNDS = 3


def queue_rows(pending: int, scratch: Path, reps: int) -> None:
    source = built.queue_ledger(pending)
    print(f"queue ledger, {pending} pending jobs", flush=True)
    server = serve(source, scratch / f"q{pending}")
    started(server)
    try:
        with server.client(server.admin_token, timeout=120) as client:
            livez = timings(lambda: client.get("/livez"), reps * 100)
            base = statistics.median(livez)
            line("/livez p50 (the baseline)", ms(base))
            dashboard_rows(client, base, reps * 4, f", {pending} pending")
            web_panel_rows(client, base, reps * 2, goal=True)
            job_id = client.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]["job_id"]
            # Rounds of a quiet /livez baseline right before a few seconds of status reads (several of
            # the background plan's passes and of the submits fall in each): the median round's ratio.
            ratios, status = [], []
            for _ in range(ROUNDS):
                alone = timings(lambda: client.get("/livez"), reps * 30)
                reads = with_submits(server, lambda: timings(lambda: client.get(f"/api/status/{job_id}"), reps * 70))
                ratios.append(statistics.mean(alone) / statistics.mean(reads))
                status.extend(reads)
            ratio = statistics.median(ratios)
            line(f"status GET throughput, 5 submits/s alongside (median of {ROUNDS})",
                 f"{1 / statistics.mean(status):.0f} /s", ratio, ">= 0.8 x livez", ratio >= 0.8)  # fmt: skip
            print(f"    (each round: {', '.join(f'{r:.2f}' for r in ratios)})")
            line("status GET p99, 5 submits/s alongside", ms(p(status, 99)), None, "<= 10 ms", p(status, 99) <= 0.010)
    finally:
        server.stop()


def _keep_submitting(url: str, token: str, stop: Any, failed: Any) -> None:
    """A submit every 0.2 s, from a process of its own (a thread would share the timing client's GIL:
    each submit's multipart encoding would delay the reads being timed, and only theirs)."""
    config = b"competition_id: c\nproject_id: p\nuser_id: admin\nexpected_time: 60\n"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as other:
        while not stop.wait(0.2):
            files = {"code": ("solution.py", b"pass\n"), "config_file": ("config.yaml", config)}
            try:
                answer = other.post("/api/submit?wait=false", files=files)  # wait defaults to true
            except httpx.HTTPError as e:  # counted, not fatal: the status figures are what is measured
                failed.put(type(e).__name__)
                continue
            if answer.status_code != 200:
                failed.put(str(answer.status_code))


def with_submits(server: Server, measure: Callable[[], list[float]]) -> list[float]:
    context = multiprocessing.get_context("fork")
    stop, failed = context.Event(), context.SimpleQueue()
    assert server.admin_token is not None
    submitter = context.Process(target=_keep_submitting, args=(server.url, server.admin_token, stop, failed))
    submitter.start()
    try:
        time.sleep(0.3)  # its first submits are in
        return measure()
    finally:
        stop.set()
        submitter.join()
        errors = []
        while not failed.empty():
            errors.append(failed.get())
        if errors:
            print(f"  ({len(errors)} submits alongside failed: {', '.join(sorted(set(errors)))})")


def writer_rows(scratch: Path, runs: int) -> None:
    """The ledger on the server's event loop and GIL switch interval, against raw APSW."""
    print(f"writer (loop {EVENT_LOOP}, GIL switch interval {GIL_SWITCH_INTERVAL_S * 1e3} ms)")
    ratios, ceilings, raw_us = [], [], []
    phases: dict[str, list[float]] = {}
    loop_factory = uvicorn.Config(app=lambda: None, loop=EVENT_LOOP).get_loop_factory()
    default_interval = sys.getswitchinterval()
    for run in range(runs):
        raw = baseline_inserts(scratch / f"raw{run}.db", BASELINE_EVENTS)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                ours = runner.run(concurrent_appends(scratch / f"ours{run}.db", BASELINE_EVENTS, 64, phases))
        finally:
            sys.setswitchinterval(default_interval)
        ceiling = baseline_inserts(scratch / f"ceiling{run}.db", BASELINE_EVENTS, 64)
        ratios.append(ours / raw)
        ceilings.append(ceiling / raw)
        raw_us.append(1e6 / raw)
    median = statistics.median(ratios)
    spread = f"{min(ratios):.2f}..{max(ratios):.2f}"
    line(
        f"durable appends, 64 appenders / raw APSW batched (median of {runs})", spread, median, ">= 0.5", median >= 0.5
    )
    # What 64 appenders allow at best: raw transactions of 64 rows, no Python, no event loop (not a goal).
    print(f"  raw APSW at 64 rows per transaction / batched: {statistics.median(ceilings):.2f} (median)")
    # Why: an event's time by phase (medians), against raw's whole time per event and the goal's budget.
    raw_event = statistics.median(raw_us)
    split = ", ".join(f"{phase} {statistics.median(us):.1f}" for phase, us in phases.items())
    print(f"  µs per event: raw APSW {raw_event:.1f} (the goal allows {raw_event / 0.5:.1f}); ours: {split}")


def http_stack_row() -> None:
    """uvicorn picks httptools by itself when it is installed (in the server's environment, which is
    this one); the loop is the server's choice (``cli.serve.EVENT_LOOP``: uvloop's spawn froze it)."""
    httptools = importlib.util.find_spec("httptools") is not None
    what = f"http {'httptools' if httptools else 'h11'}, loop {EVENT_LOOP}"
    line("HTTP stack (uvicorn)", what, None, "httptools", httptools)


def flat_row(what: str, ratios: dict[int, float], *, from_size: int = 0) -> None:
    """A read costs the same at every size from ``from_size`` on: its ratio at the largest within
    1.5 x the smallest."""
    ratios = {size: ratio for size, ratio in ratios.items() if size >= from_size}
    if len(ratios) < 2:
        return
    small, large = min(ratios), max(ratios)
    growth = ratios[large] / ratios[small]
    line(f"{what} ratio at {large} / at {small} events", f"{growth:.2f} x", None, "<= 1.5 x", growth <= 1.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 k and 100 k events, fewer requests")
    parser.add_argument("--sizes", help="comma-separated event counts (default 10000,100000,1000000)")
    parser.add_argument("--pending", type=int, default=25_000)
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "10000,100000,1000000")).split(",")]
    reps = 5 if args.quick else 10
    began = time.perf_counter()
    jobs_ratios: dict[int, float] = {}
    panel_ratios: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="gpuledger-scale-") as directory:
        scratch = Path(directory)
        for size in sizes:
            history_rows(size, scratch, reps, size == sizes[-1], jobs_ratios, panel_ratios)
        print("across sizes", flush=True)
        flat_row("admin /api/jobs", jobs_ratios)
        # From 100 k events on the last hour is full (10 k events span 33 minutes): the same window's jobs
        flat_row("web panels' slowest", panel_ratios, from_size=100_000)
        http_stack_row()
        queue_rows(args.pending, scratch, reps)
        writer_rows(scratch, 1 if args.quick else 5)
    print(f"total {time.perf_counter() - began:.0f} s; {len(MISSED)} goals missed")
    for missed in MISSED:
        print(f"  missed: {missed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
