"""Arrays and sweeps of project directories over real HTTP: the archive is checked once at /api/arrays as
/api/submit checks it, and every task runs the project with its own parameters and keeps its own artifacts."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from server import OPEN_LIMITS, Server, cli_user, config_yaml, run_cli, running
from test_projects import hostile_tar, pack, write_project

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]
PROJECT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module, with a small PROJECT_MAX_BYTES and room for a sweep's tasks at once."""
    with running(
        tmp_path_factory.mktemp("arrproj"),
        code_scanner_quick_mode=True,
        endpoint_limits=OPEN_LIMITS,
        max_active_jobs_per_user=0,
        rate_limit_per_minute=0,
        project_max_bytes=PROJECT_LIMIT,
        local_slots=3,
        job_command="python3 {entrypoint} {args}",
    ) as started:
        yield started


TRAIN = "import json\nfrom lib.save import save\nsave(json.load(open('params.json'))['lr'])\n"
SAVE = (
    "import json, os\n"
    "def save(lr):\n"
    "    os.makedirs('outputs', exist_ok=True)\n"
    "    json.dump({'lr': lr}, open('outputs/result.json', 'w'))\n"
)


def test_a_sweep_of_a_project_keeps_each_tasks_own_artifact(server: Server, tmp_path: Path) -> None:
    """`gpuledger submit DIR` with a 3-point sweep: every task completes, and its outputs/result.json
    (written by a module the entrypoint imports) holds its own parameter."""
    from test_api_arrays import wait_array

    env = cli_user(server, tmp_path)
    project = write_project(tmp_path / "proj", {"train.py": TRAIN, "lib/__init__.py": "", "lib/save.py": SAVE})
    config = config_yaml(env["NAME"], expected=60, entrypoint="train.py") + b"sweep:\n  lr: [0.1, 0.01, 0.001]\n"
    (tmp_path / "config.yaml").write_bytes(config)
    done = run_cli(tmp_path, "submit", str(project), "-c", "config.yaml", "-d", env=env)
    assert done.returncode == 0, done.stderr
    assert "packed" in done.stderr
    array_id = done.stdout.strip()
    with server.client(env["GPULEDGER_TOKEN"]) as client:
        tasks = wait_array(client, array_id, timeout=60)["task_list"]
        assert [t["status"] for t in tasks] == ["completed"] * 3, tasks
        saved = [client.get(f"/api/jobs/{t['job_id']}/artifacts/outputs/result.json").json() for t in tasks]
    assert saved == [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}]
    fetched = run_cli(tmp_path, "download", tasks[2]["job_id"], "-o", "got", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads((tmp_path / "got/outputs/result.json").read_text()) == {"lr": 0.001}


@pytest.mark.parametrize(
    ("archive", "status", "said"),
    [
        (hostile_tar(tarfile.TarInfo("../escape.py"), b"x"), 400, "'../escape.py': leads outside the project"),
        (hostile_tar(tarfile.TarInfo("w.bin"), b"\0" * PROJECT_LIMIT), 413, "largest files: w.bin (65536 bytes)"),
        (pack({"main.py": "import h\n", "h.py": "import os\nos.system('id')\n"}), 400, "h.py line 2: os.system"),
    ],
    ids=["escape", "too-large", "scanner"],  # an archive's bytes in a test id reach the environment (E2BIG)
)
def test_a_bad_project_array_is_refused_as_a_single_submit_is(
    server: Server, archive: bytes, status: int, said: str
) -> None:
    """/api/arrays refuses a hostile member (400), an archive past PROJECT_MAX_BYTES (413) and a module
    the scanner rejects (400), each naming the file, and records no task."""
    with server.client(server.token("mallory")) as client:
        answer = client.post(
            "/api/arrays",
            params={"array": "0-2"},
            files={
                "project": ("p.tar", archive),
                "config_file": ("c.yaml", config_yaml("mallory", entrypoint="main.py")),
            },
        )
        assert answer.status_code == status, answer.text
        assert said in answer.json()["detail"]
        assert client.get("/api/jobs", params={"user_id": "mallory"}).json()["jobs"] == []


def test_every_task_of_a_project_array_resumes_from_the_same_job(server: Server) -> None:
    """`resume_from` on an array is checked once and every task finds the earlier job's outputs/."""
    from server import wait_status
    from test_api_arrays import wait_array

    first = pack({"main.py": "import os\nos.makedirs('outputs')\nopen('outputs/ckpt.txt', 'w').write('step 7')\n"})
    then = pack({"main.py": "import sys\nfrom show import show\nshow(sys.argv[1:])\n", "show.py": SHOW})
    with server.client(server.token("rita")) as client:
        written = client.post(
            "/api/submit?wait=false", files=project_parts(first, config_yaml("rita", entrypoint="main.py"))
        )
        assert written.status_code == 200, written.text
        wait_status(client, written.json()["job_id"], {"completed"})
        config = config_yaml("rita", entrypoint="main.py", resume_from=written.json()["job_id"], args='["--x"]')
        answer = client.post("/api/arrays", params={"array": "0-1"}, files=project_parts(then, config))
        assert answer.status_code == 200, answer.text
        tasks = wait_array(client, answer.json()["array_id"], timeout=60)["task_list"]
        outputs = [client.get(f"/api/results/{t['job_id']}").json()["stdout"] for t in tasks]
    assert outputs == ["step 7 ['--x']\n"] * 2


SHOW = "def show(args):\n    print(open('outputs/ckpt.txt').read(), args)\n"


def project_parts(archive: bytes, config: bytes) -> dict[str, tuple[str, bytes]]:
    return {"project": ("p.tar", archive), "config_file": ("c.yaml", config)}
