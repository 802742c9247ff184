"""``gpuledger server-log``: the server's JSON log file, filtered; pretty on a terminal, raw JSON when piped."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from ledger.store.settings import load_settings

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_COLOURS = {"debug": "\x1b[2m", "info": "\x1b[32m", "warning": "\x1b[33m", "error": "\x1b[31m", "critical": "\x1b[41m"}


def register(subparsers: Any) -> None:
    logs = subparsers.add_parser("server-log", help="tail the server's structured log file")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--job", help="only lines about this job")
    logs.add_argument("--user", help="only lines about this user")
    logs.add_argument("--level", choices=sorted(LEVELS, key=LEVELS.__getitem__), help="minimum level")
    logs.add_argument("--file", help="log file (default: the LOG_FILE setting)")
    logs.add_argument("--config", metavar="FILE")
    logs.add_argument("--json", action="store_true", help="raw JSON lines even on a terminal")
    logs.set_defaults(func=run_logs)


def matches(entry: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.job and entry.get("job_id") != args.job:
        return False
    if args.user and entry.get("user_id") != args.user:
        return False
    return not (args.level and LEVELS.get(str(entry.get("level", "info")), 20) < LEVELS[args.level])


def pretty(entry: dict[str, Any], colour: bool) -> str:
    level = str(entry.get("level", "info"))
    head = f"{str(entry.get('timestamp', ''))[:23]} {level:<8} {entry.get('event', '')}"
    if colour:
        head = f"{_COLOURS.get(level, '')}{head}\x1b[0m"
    rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("timestamp", "level", "event"))
    return f"{head}  {rest}" if rest else head


def _lines(path: Path, follow: bool) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        while True:
            line = handle.readline()
            if line:
                yield line
            elif follow:
                time.sleep(0.25)
            else:
                return


def run_logs(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = Path(args.file or load_settings(args.config).storage.log_file)
    if not path.exists():
        print(f"gpuledger: no log file at {path}", file=sys.stderr)
        return 2
    raw = args.json or not out.isatty()
    for line in _lines(path, args.follow):
        try:
            entry = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue  # a line being written, or not ours
        if not isinstance(entry, dict) or not matches(entry, args):
            continue
        out.write(line if raw else pretty(entry, colour=True) + "\n")
        out.flush()
    return 0
