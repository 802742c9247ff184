"""`gpuledger scan FILE [--json] [--llm]`: output and exit codes."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import pytest

from cli.scan import register
from executors.scan.scanner import ScanReport

CLEAN = "import pandas as pd\ndf = pd.read_csv('train.csv')\ndf.to_csv('submission.csv', index=False)\n"
MALICIOUS = "import numpy as np\n\nimport os\nos.system('id')\n"
WARNED = "import requests\nprint(1)\n"


def scan(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gpuledger")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["scan", *argv])
    return int(args.func(args))


Writer = Callable[[str], str]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    def write_file(code: str) -> str:
        path = tmp_path / "solution.py"
        path.write_text(code)
        return str(path)

    return write_file


def test_clean_file_exits_zero(write: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    """A clean file exits 0 and says approved."""
    assert scan(write(CLEAN)) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("approved (0 findings, static scanner)")


def test_rejected_file_exits_one_and_lists_findings(write: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    """A rejected file exits 1, one line per finding with severity, line, rule and message."""
    assert scan(write(MALICIOUS)) == 1
    first, last = capsys.readouterr().out.strip().splitlines()
    assert first.split()[:4] == ["critical", "line", "4", "proc.os_system"]
    assert first.endswith("os.system executes a shell command")
    assert "rejected (1 findings" in last


def test_warned_file_exits_zero(write: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    """Warnings do not fail the command."""
    assert scan(write(WARNED)) == 0
    assert capsys.readouterr().out.startswith("warning")


def test_json_output_is_the_scan_report(write: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the ScanReport as JSON, and the exit code still follows the verdict."""
    assert scan(write(MALICIOUS), "--json") == 1
    report = msgspec.json.decode(capsys.readouterr().out, type=ScanReport)
    assert report.verdict == "rejected"
    assert report.scanner == "static"
    assert [(f.rule, f.line, f.severity) for f in report.findings] == [("proc.os_system", 4, "critical")]


def test_missing_file_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable file is a usage error (2), reported on stderr."""
    assert scan(str(tmp_path / "nope.py")) == 2
    assert "cannot read" in capsys.readouterr().err


class _RejectingModel(BaseHTTPRequestHandler):
    requests: list[dict[str, object]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
        content = json.dumps({"verdict": "reject", "findings": [{"line": 2, "message": "prints secrets"}]})
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rejecting_model() -> Iterator[str]:
    _RejectingModel.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingModel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_flag_runs_the_review(
    write: Writer,
    rejecting_model: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--llm asks the configured model, whose rejection makes the command exit 1."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPULEDGER_CODE_SCANNER_BASE_URL", rejecting_model)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-cli")
    assert scan(write(CLEAN), "--llm", "--json") == 1
    report = msgspec.json.decode(capsys.readouterr().out, type=ScanReport)
    assert (report.verdict, report.scanner) == ("rejected", "llm")
    assert [(f.rule, f.line) for f in report.findings] == [("llm.reject", 2)]
    assert _RejectingModel.requests[0]["auth"] == "Bearer sk-cli"
    assert _RejectingModel.requests[0]["path"] == "/v1/chat/completions"


def test_llm_flag_without_key_exits_two(
    write: Writer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--llm with no API key is a usage error, not a silent static-only scan."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.delenv("GPULEDGER_OPENROUTER_API_KEY", raising=False)
    assert scan(write(CLEAN), "--llm") == 2
    assert "OPENROUTER_API_KEY" in capsys.readouterr().err
