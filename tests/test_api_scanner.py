"""The code scanner in the submit pipeline, over HTTP: static rejections and the LLM review stage."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from server import config_yaml, submit, wait_status

API_KEY = "sk-test-pipeline"


class FakeLLM:
    """An OpenAI-compatible chat-completions endpoint on loopback that answers a fixed verdict."""

    def __init__(self) -> None:
        self.verdict = {"verdict": "approve", "findings": []}
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append(json.loads(body))
                reply = json.dumps(
                    {"choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(fake.verdict)}}]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    yield fake
    fake.httpd.shutdown()


def test_static_rejection_is_400_and_queues_nothing(server_factory):
    """Code that runs a shell is refused with the findings, and no job is recorded at all."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        answer = submit(client, 'import subprocess\nsubprocess.run(["ls"])\n', config_yaml("admin"))
        assert answer.status_code == 400
        assert answer.json()["detail"].startswith("Code security check failed: line 1")
        assert "[proc.subprocess]" in answer.json()["detail"]
        assert client.get("/api/jobs").json()["jobs"] == []


def test_accepted_job_carries_its_scan_event(server_factory):
    """An accepted submission has a job.scanned event (static, approved) before it is queued."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        job_id = submit(client, "print(1)\n", config_yaml("admin"), wait=True).json()["job_id"]
        events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
        types = [e["type"] for e in events]
        assert types.index("job.scanned") < types.index("job.queued")
        scanned = events[types.index("job.scanned")]["event"]
        assert (scanned["verdict"], scanned["scanner"]) == ("approved", "static")
        assert client.get(f"/api/status/{job_id}").json()["scan_verdict"] == "approved"


def test_llm_rejection_fails_the_job_with_findings_in_stderr(server_factory, fake_llm):
    """With review on, the job waits in phase scanning; an LLM rejection ends it failed/rejected."""
    fake_llm.verdict = {"verdict": "reject", "findings": [{"line": 1, "message": "exfiltrates the dataset"}]}
    server = server_factory(
        code_scanner_quick_mode=False, code_scanner_base_url=fake_llm.url, openrouter_api_key=API_KEY
    )
    with server.client(server.admin_token) as client:
        job_id = submit(client, "print('hello')\n", config_yaml("admin")).json()["job_id"]
        body = wait_status(client, job_id, {"failed", "completed"})
        assert (body["status"], body["finish_reason"]) == ("failed", "rejected")
        assert "exfiltrates the dataset" in client.get(f"/api/results/{job_id}").json()["stderr"]
        types = [e["type"] for e in client.get(f"/api/jobs/{job_id}/events").json()["events"]]
        assert "job.started" not in types
        assert "job.queued" not in types
    assert "print('hello')" in json.dumps(fake_llm.requests[0])


def test_llm_approval_queues_and_runs_the_job(server_factory, fake_llm):
    """An LLM approval queues the job, which then runs to completion."""
    server = server_factory(
        code_scanner_quick_mode=False, code_scanner_base_url=fake_llm.url, openrouter_api_key=API_KEY
    )
    with server.client(server.admin_token) as client:
        job_id = submit(client, "print('fine')\n", config_yaml("admin")).json()["job_id"]
        assert wait_status(client, job_id, {"completed", "failed"})["status"] == "completed"
        scanners = [
            e["event"]["scanner"]
            for e in client.get(f"/api/jobs/{job_id}/events").json()["events"]
            if e["type"] == "job.scanned"
        ]
        assert scanners == ["static", "llm", "llm"]  # static verdict, review pending, review verdict
