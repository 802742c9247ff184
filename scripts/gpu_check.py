"""The real-GPU check's driver (run by scripts/gpu_check.sh on a machine with an NVIDIA GPU).

Starts ``gpuledger serve`` with the local runner in a temporary directory, submits a PyTorch job and
an idle job over HTTP, and prints PASS or FAIL for each check; exits 1 if any failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BUSY = """\
import os, time, torch
print("cuda", torch.cuda.is_available(), torch.cuda.device_count(), flush=True)
print("devices", sorted(n for n in os.listdir("/dev") if n.startswith("nvidia")), flush=True)
x = torch.randn(8192, 8192, device="cuda")
hold = torch.empty(6 << 30, dtype=torch.uint8, device="cuda")  # 6 GiB held for the telemetry to see
end, n = time.time() + 30, 0
while time.time() < end:
    y = x @ x
    torch.cuda.synchronize()
    n += 1
print("matmuls", n, flush=True)
"""
IDLE = """\
import time, torch
hold = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")  # holds the GPU, does nothing with it
print("idle, holding 1 GiB", flush=True)
time.sleep(120)
"""
SETTINGS = {
    "GPULEDGER_SERVER_HOST": "127.0.0.1",
    "GPULEDGER_SERVER_PORT": "8411",
    "GPULEDGER_CODE_SCANNER_ENABLED": "false",  # the scanner would hold the torch import for review
    "GPULEDGER_GPU_SAMPLE_S": "1",
    "GPULEDGER_GPU_IDLE_POLICY": "cancel",
    "GPULEDGER_GPU_IDLE_MINUTES": "0.25",
    "GPULEDGER_GPU_IDLE_UTIL": "5",
    # CUDA maps far more address space than it uses: no RLIMIT_AS; cgroups of this VM are not known here
    "GPULEDGER_JOB_MAX_MEMORY_BYTES": "0",
    "GPULEDGER_JOB_CGROUPS": "false",
    "GPULEDGER_LEDGER_RESERVE_BYTES": str(1 << 20),
}
failures: list[str] = []


def check(name: str, ok: bool, detail: Any = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}: {name} {detail}", flush=True)
    if not ok:
        failures.append(name)


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    err = (root / "serve.err").open("wb")
    env = {**os.environ, **SETTINGS}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve"], cwd=root, env=env, stderr=err)
    url = f"http://127.0.0.1:{SETTINGS['GPULEDGER_SERVER_PORT']}"
    for _ in range(120):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    text = (root / "serve.err").read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines()]
    marks = [i for i, line in enumerate(lines) if "shown once" in line.lower() or line.startswith("token tok_")]
    token = next((c for i in marks for c in lines[i + 1 :] if c and " " not in c), "")
    if not token:
        print(text[-4000:])
        raise SystemExit("FAIL: the server did not start (its log is above)")
    return proc, token


def submit(client: httpx.Client, code: str, expected: int) -> str:
    config = f"competition_id: gpu-check\nproject_id: p\nuser_id: checker\nexpected_time: {expected}\ngpus: 1\n"
    files = {"code": ("solution.py", code.encode()), "config_file": ("config.yaml", config.encode())}
    answer = client.post("/api/submit?wait=false", files=files)
    answer.raise_for_status()
    return str(answer.json()["job_id"])


def wait_end(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/status/{job_id}").json()
        if status["status"] in ("completed", "failed", "cancelled"):
            return dict(status)
        time.sleep(1)
    return dict(client.get(f"/api/status/{job_id}").json())


def busy_job(client: httpx.Client, out: Path) -> None:
    job_id = submit(client, BUSY, 120)
    time.sleep(20)
    live = client.get(f"/api/jobs/{job_id}/gpu").json()
    check("samples arrive while the job runs", live["total_points"] > 0, f"({live['total_points']} points)")
    status = wait_end(client, job_id, 150)
    results = client.get(f"/api/results/{job_id}").json()
    print(
        "busy job:",
        json.dumps(status, indent=1)[:3000],
        "\nstdout:",
        results["stdout"],
        "\nstderr:",
        results["stderr"][-3000:],
    )
    check("the PyTorch job completed", status["status"] == "completed", status.get("finish_reason"))
    check("CUDA is available in the sandbox", "cuda True 1" in results["stdout"])
    devices = next((line for line in results["stdout"].splitlines() if line.startswith("devices")), "")
    numbered = [
        d for d in devices.replace("'", " ").replace(",", " ").split() if d[6:].isdigit() and d.startswith("nvidia")
    ]
    check("only the job's own GPU device is in the sandbox", len(numbered) == 1, devices)
    gpu = status.get("gpu") or {}
    check("telemetry: non-zero peak utilisation", gpu.get("peak_util", 0) > 0, gpu)
    check("telemetry: non-zero peak memory (over 6 GiB)", gpu.get("peak_mem_mib", 0) > 6000)
    series = client.get(f"/api/jobs/{job_id}/gpu", params={"limit": 5000}).json()
    (out / "busy_gpu.json").write_text(json.dumps(series, indent=1))


def idle_job(client: httpx.Client) -> None:
    job_id = submit(client, IDLE, 300)
    status = wait_end(client, job_id, 90)
    print("idle job:", json.dumps(status, indent=1)[:2000])
    check(
        "the idle job is flagged and cancelled",
        (status["status"], status.get("finish_reason")) == ("cancelled", "gpu_idle"),
    )
    events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
    idle = [e["event"] for e in events if e["type"] == "job.gpu_idle"]
    check("job.gpu_idle carries its samples", bool(idle and idle[0]["samples"]), idle[:1])


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    root = Path(tempfile.mkdtemp(prefix="gpuledger-check-"))
    proc, token = start_server(root)
    try:
        url = f"http://127.0.0.1:{SETTINGS['GPULEDGER_SERVER_PORT']}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            print("nodes:", client.get("/api/nodes").text[:2000])
            busy_job(client, out)
            idle_job(client)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        (out / "serve.err").write_bytes((root / "serve.err").read_bytes()[-4_000_000:])
    print("RESULT:", "all checks passed" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
