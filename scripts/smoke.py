"""Smoke test of an installed gpuledger: the server from a venv made with ``pip install .`` alone.

Run with that venv's Python (``.ci/run`` does): it starts ``gpuledger serve`` in a temporary
directory, submits one job, then asks every documented ``GET`` of the server's own ``/schema``
(anonymous and as the admin, path parameters filled with real names) and fails on any 5xx. Streaming
endpoints are left out: they answer forever. Standard library only, so it needs no test extra.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BOUNDARY = "gpuledger-smoke-boundary"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, token: str | None = None, data: bytes | None = None, content_type: str = "") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(base: str, proc: subprocess.Popen[bytes], deadline_s: float = 90.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"smoke: the server exited with {proc.returncode} before it was ready")
        try:
            if request(f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"smoke: /readyz not 200 within {deadline_s:g} s")


def submit(base: str, token: str) -> str:
    parts = [
        ("code", "solution.py", b'print("smoke")\n'),
        ("config_file", "config.yaml", b"competition_id: smoke\nproject_id: p\nuser_id: admin\nexpected_time: 60\n"),
    ]
    body = b""
    for name, filename, content in parts:
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'.encode()
        body += content + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    status, answer = request(f"{base}/api/submit?wait=false", token, body, f"multipart/form-data; boundary={BOUNDARY}")
    if status != 200:
        raise SystemExit(f"smoke: submit answered {status}: {answer[:300]!r}")
    return str(json.loads(answer)["job_id"])


def documented_gets(base: str) -> list[str]:
    status, answer = request(f"{base}/schema")
    if status != 200:
        raise SystemExit(f"smoke: /schema answered {status}: {answer[:300]!r}")
    paths = json.loads(answer)["paths"]
    return sorted(p for p, ops in paths.items() if "get" in ops and not streams_only(ops["get"]))


def streams_only(operation: dict[str, Any]) -> bool:
    """An operation whose only answer is an event stream (it never ends); the rest must answer."""
    content = (operation.get("responses", {}).get("200") or {}).get("content") or {}
    return set(content) == {"text/event-stream"}


def fill(path: str, names: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: names.get(m.group(1), "x"), path)


def check(base: str, token: str, names: dict[str, str]) -> list[str]:
    """Every documented GET, anonymous and as the admin; the failures as lines."""
    failures, asked = [], 0
    for path in ["/", "/schema", "/dashboard", *documented_gets(base)]:
        url = base + fill(path, names)
        for who in (None, token):
            status, answer = request(url, who)
            asked += 1
            if status >= 500:
                failures.append(f"{status} GET {url} ({'admin' if who else 'anonymous'}): {answer[:200]!r}")
    print(f"smoke: {asked} GETs asked, {len(failures)} answered 5xx")
    return failures


def main() -> int:
    exe = Path(sys.executable).with_name("gpuledger")
    root = Path(tempfile.mkdtemp(prefix="gpuledger-smoke-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GPULEDGER_SERVER_HOST": "127.0.0.1", "GPULEDGER_SERVER_PORT": str(port)}
    env.pop("PYTHONPATH", None)  # the installed package, never the checkout
    log = (root / "serve.out").open("wb")
    proc = subprocess.Popen([str(exe), "serve"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(base, proc)
        token = (root / "admin-token").read_text().strip()
        job = submit(base, token)
        names = {"job_id": job, "node": "local", "name": "local", "user": "admin", "user_id": "admin"}
        failures = check(base, token, names)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        print((root / "serve.out").read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
