"""Scanner speed over the test corpus: median scan time per legitimate file, against a bare ast.parse
(and how much of the corpus it gets right).

Run: python bench/scan_corpus.py [--repeat N]
"""

from __future__ import annotations

import argparse
import ast
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from executors.scan.scanner import scan_static

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "scanner_corpus"


def median_seconds(sources: list[str], work: Callable[[str], object], repeat: int) -> float:
    """Median over files of each file's best-of-``repeat`` time (best-of removes scheduler noise)."""
    per_file = []
    for source in sources:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            work(source)
            runs.append(time.perf_counter() - started)
        per_file.append(min(runs))
    return statistics.median(per_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    legit = [p.read_text() for p in sorted((CORPUS / "legit").glob("*.py"))]
    malicious = [p.read_text() for p in sorted((CORPUS / "malicious").glob("*.py"))]
    print(
        f"corpus: {len(malicious)} malicious, {len(legit)} legitimate files "
        f"(legit median {statistics.median(len(s.splitlines()) for s in legit):.0f} lines)"
    )
    rejected = sum(scan_static(s).verdict == "rejected" for s in malicious)
    passed = sum(scan_static(s).verdict != "rejected" for s in legit)
    print(f"malicious rejected: {rejected}/{len(malicious)}, legitimate passed: {passed}/{len(legit)}")
    scan = median_seconds(legit, scan_static, args.repeat)
    parse = median_seconds(legit, ast.parse, args.repeat)
    print(f"median scan_static per legit file: {scan * 1e3:.3f} ms")
    print(f"median ast.parse per legit file:   {parse * 1e3:.3f} ms")
    print(f"ratio scan/parse: {scan / parse:.1f}x")


if __name__ == "__main__":
    main()
