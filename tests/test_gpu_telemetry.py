"""GPU telemetry on the local runner through the real server over HTTP, with a FAKE NVML module
(tests/fakes/nvml/pynvml.py) standing in for the driver: samples, summary, the idle-GPU policy."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import sign_in
from fakes.gpus import NVML_PATH, write_nvml_state
from server import OPEN_LIMITS, REPO, Server, config_yaml, run_cli, submit, wait_status

pytestmark = pytest.mark.timeout(60)
TERMINAL = {"completed", "failed", "cancelled"}


def gpu_server(root: Path, policy: str, gpus: int = 2) -> Server:
    """Two fake GPUs (or ``gpus``), sampled every 0.1 s; a job is idle after 0.02 min (1.2 s) below 5 %."""
    root.mkdir(parents=True)
    state = root / "nvml.json"
    write_nvml_state(state, [0, 0])
    server = Server(
        root,
        code_scanner_enabled=False,
        local_gpus=gpus,
        local_slots=2,
        endpoint_limits=OPEN_LIMITS,
        max_active_jobs_per_user=100,
        gpu_sample_s=0.1,
        gpu_idle_policy=policy,
        gpu_idle_minutes=0.02,
        gpu_idle_util=5,
    )
    server.env["PYTHONPATH"] = f"{NVML_PATH}:{REPO}"  # the FAKE pynvml first
    server.env["FAKE_NVML_STATE"] = str(state)
    server.start()
    return server


@pytest.fixture(scope="module")
def cancelling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = gpu_server(tmp_path_factory.mktemp("gpu") / "cancel", "cancel")
    yield server
    server.stop()


def events_of(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/jobs/{job_id}/events").json()["events"])


def test_a_busy_jobs_samples_and_summary_are_served(cancelling: Server) -> None:
    """A job at 60 %: its samples are served, its end carries the summary (used = 60 % of held), never idle."""
    write_nvml_state(cancelling.root / "nvml.json", [60, 60], used_mib=4096)
    with cancelling.client(cancelling.token("busy")) as client:
        job_id = submit(client, "import time\ntime.sleep(1.5)\n", config_yaml("busy")).json()["job_id"]
        status = wait_status(client, job_id, TERMINAL)
        assert (status["status"], status["gpu_idle"]) == ("completed", None)
        gpu = status["gpu"]
        assert (gpu["gpus"], gpu["mean_util"], gpu["peak_util"]) == (1, 60.0, 60.0)
        assert (gpu["peak_mem_mib"], gpu["card_mem_mib"]) == (4096, 81559)
        assert gpu["gpu_hours_used"] == pytest.approx(0.6 * gpu["gpu_hours_held"], rel=0.01)
        series = client.get(f"/api/jobs/{job_id}/gpu").json()
        assert series["total_points"] >= 5
        assert series["summary"] == gpu
        assert {(p["util"], p["mem_used_mib"], p["power_w"]) for p in series["points"]} == {(60.0, 4096, 250.0)}
        tags = [e["type"] for e in events_of(client, job_id)]
        assert tags[-2:] == ["job.gpu_summary", "job.finished"]
        assert "job.gpu_idle" not in tags
        assert client.get(f"/api/jobs/{job_id}/gpu", params={"limit": 0}).status_code == 400


def test_an_idle_job_is_cancelled_with_the_samples_that_justify_it(cancelling: Server) -> None:
    """GPUs at 0 % for the window: job.gpu_idle with its samples, then cancelled with reason gpu_idle."""
    write_nvml_state(cancelling.root / "nvml.json", [0, 0])
    with cancelling.client(cancelling.token("idler")) as client:
        job_id = submit(client, "import time\ntime.sleep(30)\n", config_yaml("idler", expected=60)).json()["job_id"]
        status = wait_status(client, job_id, TERMINAL, timeout=20)
        assert (status["status"], status["finish_reason"]) == ("cancelled", "gpu_idle")
        assert "GPU idle: below 5% utilisation for 0.02 min" in status["message"]
        idle = next(e["event"] for e in events_of(client, job_id) if e["type"] == "job.gpu_idle")
        assert idle["action"] == "cancel"
        assert len(idle["samples"]) >= 2
        assert all(s["util"] < 5 for s in idle["samples"])
        assert idle["samples"][-1]["t"] - idle["samples"][0]["t"] >= 1.0


def test_warn_only_flags_an_idle_job_and_lets_it_finish(tmp_path: Path) -> None:
    """GPU_IDLE_POLICY = warn: the idle job gets job.gpu_idle and the message, and runs to its end."""
    server = gpu_server(tmp_path / "warn", "warn")
    try:
        with server.client(server.token("warned")) as client:
            job_id = submit(client, "import time\ntime.sleep(2.5)\n", config_yaml("warned")).json()["job_id"]
            status = wait_status(client, job_id, TERMINAL, timeout=20)
            assert (status["status"], status["finish_reason"]) == ("completed", "results_missing")
            assert status["message"].startswith("GPU idle: below 5% utilisation")
            idle = [e["event"] for e in events_of(client, job_id) if e["type"] == "job.gpu_idle"]
            assert [e["action"] for e in idle] == ["warn"]
    finally:
        server.stop()


def test_usage_shows_held_vs_used_gpu_hours(cancelling: Server, tmp_path: Path) -> None:
    """Status shows the live sample then the summary; usage (API, CLI, dashboard) shows held vs used."""
    write_nvml_state(cancelling.root / "nvml.json", [60, 60])
    token = cancelling.token("user")
    env = {"GPULEDGER_URL": cancelling.url, "GPULEDGER_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path)}
    env["COLUMNS"] = "200"
    with cancelling.client(token) as client:
        job_id = submit(client, "import time\ntime.sleep(4)\n", config_yaml("user")).json()["job_id"]
        wait_status(client, job_id, {"running"})
        while not client.get(f"/api/jobs/{job_id}/gpu").json()["points"]:
            time.sleep(0.05)
        running = run_cli(tmp_path, "status", job_id, env=env)
        assert re.search(r"gpu now +GPU [01] 60% 1000/81559 MiB", running.stdout), running.stdout
        wait_status(client, job_id, TERMINAL)
        usage = client.get("/api/usage/gpu", params={"since": "1h"}).json()
        row = next(j for j in usage["jobs"] if j["job_id"] == job_id)
        assert row["gpu_hours_used"] == pytest.approx(0.6 * row["gpu_hours_held"], rel=0.01)
        assert row["gpu_hours_held"] > 0
        assert [(u["user_id"], u["gpu_jobs"]) for u in usage["users"]] == [("user", 1)]
        bad = client.get("/api/usage/gpu", params={"since": "last tuesday"})
        assert bad.status_code == 400
        assert "since" in bad.json()["detail"]
    with cancelling.client(cancelling.admin_token) as admin:
        dashboard = admin.get("/api/dashboard").json()["gpu_usage"]
        assert "user" in {u["user_id"] for u in dashboard["users"]}
    table = run_cli(tmp_path, "usage", "--since", "1h", env=env)
    assert table.returncode == 0, table.stderr
    assert job_id in table.stdout
    status = run_cli(tmp_path, "status", job_id, env=env)
    assert "utilisation mean 60% peak 60%" in status.stdout


def test_requeue_sends_an_idle_job_back_once_then_cancels_it(tmp_path: Path) -> None:
    """GPU_IDLE_POLICY = requeue: an idle job is requeued (gpu_idle), runs again, and idle again is cancelled."""
    server = gpu_server(tmp_path / "requeue", "requeue")
    try:
        with server.client(server.token("twice")) as client:
            code = "import time\ntime.sleep(30)\n"
            job_id = submit(client, code, config_yaml("twice", expected=60)).json()["job_id"]
            status = wait_status(client, job_id, TERMINAL, timeout=30)
            assert (status["status"], status["finish_reason"], status["attempt"]) == ("cancelled", "gpu_idle", 2)
            assert [(a["outcome"], a["reason"]) for a in status["attempts"]] == [("requeued", "gpu_idle")]
            assert status["attempts"][0]["started_at"] is not None  # the stopped run is kept (and charged)
            idle = [e["event"]["action"] for e in events_of(client, job_id) if e["type"] == "job.gpu_idle"]
            assert idle == ["requeue", "cancel"]
    finally:
        server.stop()


def test_a_node_without_gpus_reports_and_charges_no_gpu(tmp_path: Path) -> None:
    """On a node without GPUs a `gpus: 0` job has no samples, no summary, and zero GPU-hours."""
    server = gpu_server(tmp_path / "cpu", "cancel", gpus=0)
    try:
        with server.client(server.token("cpu")) as client:
            code = "import time\ntime.sleep(1.5)\n"
            job_id = submit(client, code, config_yaml("cpu", gpus=0)).json()["job_id"]
            assert wait_status(client, job_id, TERMINAL)["gpu"] is None
            series = client.get(f"/api/jobs/{job_id}/gpu").json()
            assert (series["gpus"], series["points"], series["summary"]) == (0, [], None)
            usage = client.get("/api/usage/gpu").json()
            assert [(j["gpus"], j["gpu_hours_held"], j["gpu_hours_used"]) for j in usage["jobs"]] == [(0, 0, 0)]
            assert [(u["gpu_jobs"], u["gpu_hours_held"], u["gpu_hours_used"]) for u in usage["users"]] == [(0, 0, 0)]
    finally:
        server.stop()


def test_the_job_page_draws_the_gpu_chart(cancelling: Server, browser: Any) -> None:
    """The web job page shows the GPU summary and an inline SVG chart (utilisation and memory)."""
    write_nvml_state(cancelling.root / "nvml.json", [60, 60], used_mib=4096)
    assert cancelling.admin_token is not None
    with cancelling.client(cancelling.admin_token) as admin:
        job_id = submit(admin, "import time\ntime.sleep(1)\n", config_yaml("admin")).json()["job_id"]
        wait_status(admin, job_id, TERMINAL)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, cancelling.url, cancelling.admin_token)
        page.goto(f"{cancelling.url}/dashboard#/job/{job_id}")
        page.locator("#job-gpu", has_text="Mean utilisation 60% (peak 60%)").wait_for()
        assert page.locator("#job-gpu svg.gpu-chart polyline").count() == 2
        assert "4096 of 81559 MiB" in page.inner_text("#job-gpu")
    finally:
        context.close()
