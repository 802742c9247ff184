"""``gpuledger status|results JOB`` and ``cancel JOB…``: one job's state and outcome; cancelling jobs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from cli import arrays
from cli.remote import (
    add_client_options,
    async_client_from,
    client_from,
    err,
    out,
    phase_line,
    print_json,
    reason_words,
)
from cli.terminal import escape_controls, shown
from gpuledger import ApiError, AsyncClient
from gpuledger.models import GpuUse, JobGpu, to_builtins

ACTIVE = ("pending", "running")
EXIT_ERROR = 2  # as cli.main's: some job could not be cancelled
MAX_LISTED = 1000  # the most jobs one list answer holds


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="a job's status, phase, queue position and start estimate")
    status.add_argument("job", help="the job's id or a unique prefix of it, or an array's id")
    add_client_options(status)
    status.set_defaults(func=run_status)

    results = subparsers.add_parser("results", help="a job's results file, exit code and console output")
    results.add_argument("job", help="the job's id or a unique prefix of it")
    results.add_argument("--raw", action="store_true", help="the results file as written, escape sequences included")
    results.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="save the results file here (and the console output as FILE.stdout and FILE.stderr)",
    )
    add_client_options(results)
    results.set_defaults(func=run_results)

    cancel = subparsers.add_parser("cancel", help="cancel jobs: by id, or --all of yours (--status, --user)")
    cancel.add_argument("jobs", nargs="*", metavar="JOB", help="ids or unique prefixes of ids")
    cancel.add_argument("--all", action="store_true", help="every pending and running job of yours")
    cancel.add_argument("--status", choices=ACTIVE, help="only jobs in this status (implies --all)")
    cancel.add_argument("--user", help="admins: this user's jobs instead of yours (implies --all)")
    cancel.add_argument("--tasks", metavar="SPEC", help="with an array's id: only these task indices (e.g. 5-9)")
    add_client_options(cancel)
    cancel.set_defaults(func=run_cancel)


def run_status(args: argparse.Namespace) -> int:
    if arrays.names_array(args.job):
        return arrays.show_status(args)
    with client_from(args) as client:
        status = client.status(args.job)
        # While it runs: the newest sample of each of its GPUs (the summary comes with its end).
        live = client.job_gpu(status.job_id, limit=64) if status.status == "running" and not args.json else None
    if args.json:
        print_json(status)
        return 0
    table = Table(show_header=False, box=None, pad_edge=False)
    fields = to_builtins(status)
    if status.finish_reason:  # words here, the code in --json
        fields["finish_reason"] = reason_words(status)
    for key in (
        "job_id",
        "status",
        "phase",
        "reason",
        "node",
        "queue_position",
        "estimated_start_at",
        "created_at",
        "started_at",
        "completed_at",
        "exit_code",
        "finish_reason",
        "message",
        "expected_time",
        "entrypoint",
        "resume_from",
        "artifacts",
    ):
        if fields.get(key) is not None and (key != "artifacts" or fields[key]):  # no "artifacts 0" line
            table.add_row(key, escape_controls(str(fields[key])))
    if status.gpu is not None:
        table.add_row("gpu", gpu_line(status.gpu))
    if live is not None and live.points:
        table.add_row("gpu now", live_line(live))
    out.print(table)
    out.print(phase_line(status))
    return 0


def live_line(live: JobGpu) -> str:
    """The newest sample of each GPU: utilisation and memory."""
    newest = {p.index: p for p in live.points}
    return ", ".join(f"GPU {i} {p.util:g}% {p.mem_used_mib}/{p.mem_total_mib} MiB" for i, p in sorted(newest.items()))


def gpu_line(gpu: GpuUse) -> str:
    """The attempt's GPU use in one line: utilisation, memory, GPU-hours used of held."""
    return (
        f"{gpu.gpus} GPU(s), utilisation mean {gpu.mean_util:g}% peak {gpu.peak_util:g}%, "
        f"memory peak {gpu.peak_mem_mib} of {gpu.card_mem_mib} MiB, "
        f"GPU-hours used {gpu.gpu_hours_used:.4f} of {gpu.gpu_hours_held:.4f} held"
    )


def run_results(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        results = client.results(args.job)
    if args.json:
        print_json(results)
        return 0
    if args.output is not None:
        if results.results is not None:
            args.output.write_text(results.results, encoding="utf-8")
        Path(f"{args.output}.stdout").write_text(results.stdout, encoding="utf-8")
        Path(f"{args.output}.stderr").write_text(results.stderr, encoding="utf-8")
        saved = f"{args.output}" if results.results is not None else "no results file;"
        err.print(f"gpuledger: saved {saved} {args.output}.stdout {args.output}.stderr")
    elif results.results is not None:
        sys.stdout.write(shown(results.results, raw=args.raw))
    cut = [name for name, flag in results.truncated.items() if flag]
    note = f", truncated: {', '.join(cut)} (full text: gpuledger logs {args.job})" if cut else ""
    none = "" if results.results is not None else ", no results file"
    code = "" if results.exit_code is None else f", exit code {results.exit_code}"
    none = f", {results.pruned}" if results.pruned else none
    err.print(f"gpuledger: job {results.job_id} {results.status}{code}{none}{note}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    chosen = args.all or args.status or args.user
    if bool(args.jobs) == bool(chosen):
        raise ValueError("cancel takes job ids, or --all / --status / --user (not both)")
    if args.tasks is not None and not (len(args.jobs) == 1 and arrays.names_array(args.jobs[0])):
        raise ValueError("cancel --tasks takes one array id")
    if (len(args.jobs) == 1 and arrays.names_array(args.jobs[0])) or (args.all and not args.status and not args.user):
        return arrays.cancel(args)  # the array's tasks, or all of yours: one write on the server
    if len(args.jobs) == 1:  # one job: its answer, or its error as any other command's
        with client_from(args) as client:
            answer = client.request("POST", f"/api/cancel/{args.jobs[0]}").json()
        if args.json:
            print_json({"job_id": answer["job_id"], "status": answer["status"]})
        else:
            print(f"job {answer['job_id']} {answer['status']}")
        return 0
    answers = asyncio.run(_cancel_all(args))
    failed = [a for a in answers if "error" in a]
    if args.json:
        print_json({"cancelled": [a for a in answers if "error" not in a], "failed": failed})
    for answer in [] if args.json else answers:
        if "error" in answer:
            err.print(f"gpuledger: job {answer['job_id']}: {answer['error']}", markup=False)
        else:
            print(f"job {answer['job_id']} {answer['status']}")
    if chosen and not answers and not args.json:
        err.print("gpuledger: no pending or running job to cancel")
    return EXIT_ERROR if failed else 0


async def _cancel_all(args: argparse.Namespace) -> list[dict[str, str]]:
    async with async_client_from(args) as client:
        ids = list(args.jobs)
        if not ids:
            user = args.user or (await client.whoami()).user_id  # an admin's own, unless --user
            jobs = await client.jobs(user_id=user, status=args.status, limit=MAX_LISTED)
            ids = [job.job_id for job in jobs if job.status in ACTIVE]
        return list(await asyncio.gather(*(_cancel_one(client, job_id) for job_id in ids)))


async def _cancel_one(client: AsyncClient, job_id: str) -> dict[str, str]:
    try:
        answer = (await client.request("POST", f"/api/cancel/{job_id}")).json()
    except ApiError as e:
        return {"job_id": job_id, "error": e.detail}
    return {"job_id": str(answer["job_id"]), "status": str(answer["status"])}
