"""``gpuledger status|results|cancel|logs JOB``: one job's state, outcome, cancel and console output."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from cli.remote import (
    EXIT_DETACHED,
    add_client_options,
    async_client_from,
    client_from,
    detached_hint,
    err,
    out,
    phase_line,
    print_json,
)
from gpuledger.models import to_builtins


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="a job's status, phase, queue position and start estimate")
    status.add_argument("job")
    add_client_options(status)
    status.set_defaults(func=run_status)

    results = subparsers.add_parser("results", help="a job's results file, exit code and console output")
    results.add_argument("job")
    results.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="save the results file here (and the console output as FILE.stdout and FILE.stderr)",
    )
    add_client_options(results)
    results.set_defaults(func=run_results)

    cancel = subparsers.add_parser("cancel", help="cancel a pending or running job")
    cancel.add_argument("job")
    add_client_options(cancel)
    cancel.set_defaults(func=run_cancel)

    logs = subparsers.add_parser("logs", help="a job's stdout (or --stderr); -f follows it live")
    logs.add_argument("job")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--stderr", action="store_true", help="the job's stderr instead of its stdout")
    logs.add_argument("--offset", type=int, default=0, help="start at this byte")
    add_client_options(logs)
    logs.set_defaults(func=run_logs)


def run_status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        status = client.status(args.job)
    if args.json:
        print_json(status)
        return 0
    table = Table(show_header=False, box=None, pad_edge=False)
    fields = to_builtins(status)
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
    ):
        if fields.get(key) is not None:
            table.add_row(key, str(fields[key]))
    out.print(table)
    out.print(phase_line(status))
    return 0


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
        sys.stdout.write(results.results)
    cut = [name for name, flag in results.truncated.items() if flag]
    note = f", truncated: {', '.join(cut)} (full text: gpuledger logs {args.job})" if cut else ""
    none = "" if results.results is not None else ", no results file"
    code = "" if results.exit_code is None else f", exit code {results.exit_code}"
    err.print(f"gpuledger: job {results.job_id} {results.status}{code}{none}{note}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        state = client.cancel(args.job)
    if args.json:
        print_json({"job_id": args.job, "status": state})
    else:
        print(f"job {args.job} {state}")
    return 0


async def _print_logs(args: argparse.Namespace) -> None:
    async with async_client_from(args) as client:
        stream = "stderr" if args.stderr else "stdout"
        async for chunk in client.logs(args.job, stream=stream, offset=args.offset, follow=args.follow):
            # --json: one line per chunk, with the byte offset after it (a resume point for --offset)
            sys.stdout.write(json.dumps(to_builtins(chunk)) + "\n" if args.json else chunk.text)
            sys.stdout.flush()


def run_logs(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_print_logs(args))
    except KeyboardInterrupt:
        err.print(f"\ngpuledger: {detached_hint(args.job)}")
        return EXIT_DETACHED
    return 0
