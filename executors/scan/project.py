"""The static scan of a project directory: every Python file, the entrypoint first, within a time budget.

A project is many files, and a hostile one may be many large files: past the budget the files not yet
scanned are named in one warning (the job is warned, not approved) rather than the submit taking minutes.
"""

from __future__ import annotations

import time

import msgspec

from executors.scan.scanner import ScanReport, scan_static, verdict_for
from ledger.domain.events import Finding

PROJECT_SCAN_BUDGET_S = 5.0
SHOWN_UNSCANNED = 5


def python_files(files: dict[str, bytes], entrypoint: str) -> list[str]:
    """The files the scan reads, in its order: the entrypoint, then every other ``.py`` file by path."""
    others = sorted(path for path in files if path.endswith(".py") and path != entrypoint)
    return [entrypoint, *others] if entrypoint in files else others


def scan_project(files: dict[str, bytes], entrypoint: str, budget_s: float = PROJECT_SCAN_BUDGET_S) -> ScanReport:
    """Each Python file's findings, marked with its path; files left when the budget ran out are named."""
    deadline = time.monotonic() + budget_s
    findings: list[Finding] = []
    order = python_files(files, entrypoint)
    for index, path in enumerate(order):
        if time.monotonic() > deadline:
            findings.append(_unscanned(order[index:], budget_s))
            break
        report = scan_static(files[path].decode("utf-8", errors="replace"))
        findings.extend(msgspec.structs.replace(f, path=path) for f in report.findings)
    return ScanReport(verdict=verdict_for(findings), findings=findings)


def _unscanned(paths: list[str], budget_s: float) -> Finding:
    shown = ", ".join(paths[:SHOWN_UNSCANNED]) + (f" and {len(paths) - SHOWN_UNSCANNED} more" if len(paths) > 5 else "")
    return Finding(
        rule="scan.budget",
        line=0,
        message=f"not scanned within the {budget_s:g} s budget: {shown}",
        severity="warning",
        path=paths[0],
    )
