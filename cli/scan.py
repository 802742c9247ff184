"""``gpuledger scan FILE``: run the code scanner on a local file, as the server would on submit."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from executors.scan.llm import review_with_llm
from executors.scan.scanner import ScanReport, scan_static
from ledger.domain.errors import SettingsError
from ledger.store.settings import load_settings

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    """Add the ``scan`` subcommand to the ``gpuledger`` parser."""
    parser = subparsers.add_parser(
        "scan",
        help="scan a Python file with the code scanner",
        description="Scan a solution file; exit 1 if it would be rejected, 0 otherwise.",
    )
    parser.add_argument("file", type=Path, help="the Python file to scan")
    parser.add_argument("--json", action="store_true", help="print the scan report as JSON")
    parser.add_argument(
        "--llm", action="store_true", help="also run the LLM review (needs OPENROUTER_API_KEY; ignores quick mode)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Scan ``args.file``; print the findings; 1 when rejected, 0 otherwise, 2 on a usage error."""
    try:
        code = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"gpuledger scan: cannot read {args.file}: {e}", file=sys.stderr)
        return EXIT_USAGE
    report = scan_static(code)
    if args.llm:
        try:
            settings = load_settings()
        except SettingsError as e:
            print(f"gpuledger scan: {e}", file=sys.stderr)
            return EXIT_USAGE
        if not settings.scanner.openrouter_api_key:
            print("gpuledger scan: --llm needs OPENROUTER_API_KEY", file=sys.stderr)
            return EXIT_USAGE
        report = asyncio.run(review_with_llm(code, settings.scanner, report))
    print(msgspec.json.encode(report).decode() if args.json else _as_text(report, args.file))
    return EXIT_REJECTED if report.verdict == "rejected" else EXIT_OK


def _as_text(report: ScanReport, path: Path) -> str:
    lines = [f"{f.severity:8}  line {f.line:<4}  {f.rule:28}  {f.message}" for f in report.findings]
    by = f"{report.scanner} scanner" + (f", {report.model}" if report.model else "")
    lines.append(f"{path}: {report.verdict} ({len(report.findings)} findings, {by})")
    return "\n".join(lines)
