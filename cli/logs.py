"""``gpuledger logs JOB [-f]``: a job's stdout and stderr, labelled, or one of them with a filter.

Both streams go to stdout (so ``| grep`` sees both); stderr lines start with ``stderr| `` (red on a
terminal). A line of one stream is never cut by the other's: a stream's unfinished line is ended
before the other stream writes. ``--stdout`` / ``--stderr`` print that stream alone, unlabelled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, TextIO

from cli.remote import EXIT_DETACHED, add_client_options, async_client_from, detached_hint, err
from cli.terminal import STDERR_LABEL, Labeller, shown
from gpuledger import AsyncClient
from gpuledger.models import to_builtins

RED, RESET = "\x1b[31m", "\x1b[0m"


def register(subparsers: Any) -> None:
    logs = subparsers.add_parser("logs", help="a job's stdout and stderr (labelled); -f follows them live")
    logs.add_argument("job", help="the job's id or a unique prefix of it")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    only = logs.add_mutually_exclusive_group()
    only.add_argument("--stdout", action="store_true", help="only the job's stdout")
    only.add_argument("--stderr", action="store_true", help="only the job's stderr")
    logs.add_argument("--offset", type=int, default=0, help="start at this byte (of each stream shown)")
    logs.add_argument("--raw", action="store_true", help="the job's bytes as written, escape sequences included")
    add_client_options(logs)
    logs.set_defaults(func=run_logs)


class Mixer:
    """Writes chunks of several streams to one sink, each stream's lines labelled, none cut by another."""

    def __init__(self, sink: TextIO, labels: dict[str, str], *, raw: bool) -> None:
        self.sink, self.raw = sink, raw
        self.labellers = {stream: Labeller(label) for stream, label in labels.items()}
        self.unfinished: str | None = None  # the stream whose last line has no newline yet

    def write(self, stream: str, text: str) -> None:
        text = shown(text, raw=self.raw)
        if not text:
            return
        if self.unfinished not in (None, stream):
            self.sink.write("\n")
            self.labellers[self.unfinished].at_line_start = True
        self.sink.write(self.labellers[stream](text))
        self.sink.flush()
        self.unfinished = None if text.endswith("\n") else stream


def _streams(args: argparse.Namespace) -> list[str]:
    if args.stdout or args.stderr:
        return ["stdout" if args.stdout else "stderr"]
    return ["stdout", "stderr"]


def _label() -> str:
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return f"{RED}{STDERR_LABEL.rstrip()}{RESET} " if colour else STDERR_LABEL


async def _pump(client: AsyncClient, args: argparse.Namespace, stream: str, mixer: Mixer) -> None:
    async for chunk in client.logs(args.job, stream=stream, offset=args.offset, follow=args.follow):
        if args.json:  # one line per chunk, with the byte offset after it (a resume point for --offset)
            sys.stdout.write(json.dumps(to_builtins(chunk)) + "\n")
            sys.stdout.flush()
        else:
            mixer.write(stream, chunk.text)
        if chunk.pruned and not args.json:
            err.print(f"gpuledger: {stream}: {chunk.pruned}")


async def _print_logs(args: argparse.Namespace) -> None:
    streams = _streams(args)
    labels = {"stdout": "", "stderr": _label() if len(streams) > 1 else ""}
    mixer = Mixer(sys.stdout, labels, raw=args.raw)
    async with async_client_from(args) as client:
        if args.follow:
            await asyncio.gather(*(_pump(client, args, stream, mixer) for stream in streams))
        else:
            for stream in streams:
                await _pump(client, args, stream, mixer)
    if len(streams) > 1 and mixer.unfinished is not None:
        sys.stdout.write("\n")


def run_logs(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_print_logs(args))
    except KeyboardInterrupt:
        err.print(f"\ngpuledger: {detached_hint(args.job)}")
        return EXIT_DETACHED
    return 0
