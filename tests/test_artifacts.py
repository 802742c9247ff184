"""Artifacts against a real server on the local runner: what a job leaves in outputs/ comes back
byte-exact through `gpuledger download`, links never lead the server out of the workdir, only the
owner (and admins) see them, and `resume_from` starts the next job from them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server import OPEN_LIMITS, Server, cli_user, config_yaml, run_cli, running, submit, wait_status

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]

WRITER = """
import os, random
os.makedirs("outputs/ckpt", exist_ok=True)
random.seed(7)
open("outputs/ckpt/model.pt", "wb").write(bytes(random.getrandbits(8) for _ in range(300_000)))
open("outputs/log.txt", "w").write("epoch 1\\n")
open("notes.txt", "w").write("not an artifact")
os.symlink("/etc/passwd", "outputs/passwd")
os.symlink("/etc", "outputs/etc")
print("wrote")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings: dict[str, Any] = {
        "code_scanner_quick_mode": True,
        "endpoint_limits": OPEN_LIMITS,
        "max_active_jobs_per_user": 0,
        "rate_limit_per_minute": 0,
    }
    with running(tmp_path_factory.mktemp("artifacts"), **settings) as started:
        yield started


@pytest.fixture(scope="module")
def written(server: Server) -> dict[str, Any]:
    """One ended job of alice's that wrote two artifacts, a file outside outputs/ and two links out."""
    with server.client(server.token("alice")) as client:
        job_id = submit(client, WRITER, config_yaml("alice")).json()["job_id"]
        wait_status(client, job_id, {"completed"})
        return {"job_id": job_id, "listing": client.get(f"/api/jobs/{job_id}/artifacts").json()}


def test_artifacts_round_trip_byte_exact_through_download(server: Server, written: dict[str, Any], tmp_path: Path):
    """`gpuledger download JOB -o DIR` writes each artifact at its path with the recorded digest."""
    env = {**cli_user(server, tmp_path), "GPULEDGER_TOKEN": server.token("alice")}
    done = run_cli(tmp_path, "download", written["job_id"], "-o", "got", env=env)
    assert done.returncode == 0, done.stderr
    by_path = {a["path"]: a for a in written["listing"]["artifacts"]}
    assert sorted(by_path) == ["outputs/ckpt/model.pt", "outputs/log.txt"]
    model = (tmp_path / "got" / "outputs/ckpt/model.pt").read_bytes()
    assert len(model) == 300_000
    assert hashlib.sha256(model).hexdigest() == by_path["outputs/ckpt/model.pt"]["digest"]
    assert (tmp_path / "got" / "outputs/log.txt").read_text() == "epoch 1\n"


def test_links_in_outputs_are_never_followed(written: dict[str, Any]) -> None:
    """A link to /etc/passwd or to /etc in outputs/ stores nothing of what it points at."""
    paths = [a["path"] for a in written["listing"]["artifacts"]]
    assert not any("passwd" in p or p.startswith("outputs/etc") for p in paths)


def test_another_user_cannot_list_or_fetch_artifacts(server: Server, written: dict[str, Any]) -> None:
    """Bob gets 404 for alice's artifact list and file; an admin gets both."""
    job_id, path = written["job_id"], "outputs/log.txt"
    with server.client(server.token("bob")) as bob:
        assert bob.get(f"/api/jobs/{job_id}/artifacts").status_code == 404
        assert bob.get(f"/api/jobs/{job_id}/artifacts/{path}").status_code == 404
    with server.client(server.admin_token) as admin:
        assert admin.get(f"/api/jobs/{job_id}/artifacts/{path}").content == b"epoch 1\n"


def test_resume_from_sees_the_earlier_checkpoint(server: Server, written: dict[str, Any], tmp_path: Path) -> None:
    """`--resume JOB` unpacks the earlier job's artifacts at their paths before the new job starts."""
    env = {**cli_user(server, tmp_path), "GPULEDGER_TOKEN": server.token("alice")}
    (tmp_path / "config.yaml").write_bytes(config_yaml("alice"))
    (tmp_path / "next.py").write_text(
        "import hashlib\nprint(hashlib.sha256(open('outputs/ckpt/model.pt','rb').read()).hexdigest())\n"
    )
    done = run_cli(tmp_path, "submit", "next.py", "-c", "config.yaml", "--resume", written["job_id"], "--wait", env=env)
    assert done.returncode == 0, done.stderr
    model = next(a for a in written["listing"]["artifacts"] if a["path"] == "outputs/ckpt/model.pt")
    assert done.stdout == model["digest"] + "\n"
    new_job = done.stderr.split("submitted job ")[1].split()[0]
    shown = run_cli(tmp_path, "status", new_job, env=env)
    assert f"resume_from {written['job_id']}" in " ".join(shown.stdout.split())


def test_resume_from_another_users_job_is_a_404(server: Server, written: dict[str, Any]) -> None:
    """Bob cannot start from alice's job: it is "not found" to him, as everywhere."""
    with server.client(server.token("bob")) as bob:
        answer = submit(bob, "print(1)", config_yaml("bob", resume_from=written["job_id"]))
    assert answer.status_code == 404, answer.text


def test_artifact_retention_prunes_them_and_says_so(tmp_path: Path) -> None:
    """Past ARTIFACT_RETENTION the server removes a job's artifact blobs; the list and the file say
    "pruned", and resuming from that job is a 400."""
    server = Server(tmp_path, code_scanner_quick_mode=True, endpoint_limits=OPEN_LIMITS)
    server.start()
    try:
        token = server.token("carol")
        with server.client(token) as client:
            code = "import os\nos.mkdir('outputs')\nopen('outputs/a', 'w').write('x')\n"
            job_id = submit(client, code, config_yaml("carol")).json()["job_id"]
            wait_status(client, job_id, {"completed"})
            digest = client.get(f"/api/jobs/{job_id}/artifacts").json()["artifacts"][0]["digest"]
        blob = tmp_path / "jobs" / "blobs" / digest[:2] / digest
        assert blob.exists()
        server.stop()
        server.env["GPULEDGER_ARTIFACT_RETENTION"] = "1"  # the server prunes a few seconds after it starts
        server.start()
        with server.client(token) as client:
            deadline = time.monotonic() + 20
            while not (listing := client.get(f"/api/jobs/{job_id}/artifacts").json())["pruned"]:
                assert time.monotonic() < deadline, listing
                time.sleep(0.1)
            assert "ARTIFACT_RETENTION" in listing["message"]
            fetched = client.get(f"/api/jobs/{job_id}/artifacts/outputs/a")
            assert fetched.status_code == 404
            assert "pruned" in fetched.json()["detail"]
            resumed = submit(client, "print(1)", config_yaml("carol", resume_from=job_id))
            assert resumed.status_code == 400
            assert "removed by retention" in resumed.json()["detail"]
        assert not blob.exists()
        verdict = run_cli(server.root, "audit", "verify", env=server.env)  # a pruned artifact is no damage
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    finally:
        server.stop()


def test_fields_without_effect_are_warned_about(server: Server) -> None:
    """`args` under a JOB_COMMAND without {args}, and `entrypoint` for a single file, come back as warnings."""
    with server.client(server.token("dave")) as client:
        answer = submit(client, "print(1)", config_yaml("dave", args='["x"]', entrypoint="main.py"))
    assert answer.status_code == 200, answer.text
    warnings = " ".join(answer.json()["warnings"])
    assert "JOB_COMMAND has no {args}" in warnings
    assert "entrypoint ignored" in warnings


def test_the_web_job_page_lists_artifacts_each_a_download(server: Server, written: dict[str, Any], browser: Any):
    """The job page shows the artifacts with their sizes; clicking one downloads its bytes."""
    from tests.browser import sign_in

    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, server.url, server.token("alice"))
        page.goto(f"{server.url}/dashboard#/job/{written['job_id']}")
        page.locator("#job-artifacts a.artifact", has_text="outputs/ckpt/model.pt").wait_for()
        with page.expect_download() as download:
            page.click("#job-artifacts a.artifact >> text=outputs/log.txt")
        assert Path(download.value.path()).read_text() == "epoch 1\n"
        assert download.value.suggested_filename == "log.txt"
    finally:
        context.close()
