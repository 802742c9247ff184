"""Project directories against a real server on the local runner: packed by the CLI with its ignore
rules, checked by the server (size, hostile archive members), unpacked into the job's workdir."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server import OPEN_LIMITS, Server, cli_user, config_yaml, run_cli, running, wait_status

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]
PROJECT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module, with a small PROJECT_MAX_BYTES."""
    settings: dict[str, Any] = {
        "code_scanner_quick_mode": True,
        "endpoint_limits": OPEN_LIMITS,
        "max_active_jobs_per_user": 0,
        "rate_limit_per_minute": 0,
        "project_max_bytes": PROJECT_LIMIT,
        "job_command": "python3 {entrypoint} {args}",
    }
    with running(tmp_path_factory.mktemp("projects"), **settings) as started:
        yield started


def write_project(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    return root


def test_a_project_whose_entrypoint_imports_a_local_module_runs(server: Server, tmp_path: Path) -> None:
    """`gpuledger submit DIR --entry` packs the directory; `from utils import f` works in the job."""
    env = cli_user(server, tmp_path)
    project = write_project(
        tmp_path / "proj",
        {
            "train.py": "import sys\nfrom utils import f\nfrom pkg.deep import g\nprint(f(), g(), sys.argv[1:])\n",
            "utils.py": "def f():\n    return 'from utils'\n",
            "pkg/__init__.py": "",
            "pkg/deep.py": "def g():\n    return 'from pkg'\n",
        },
    )
    (tmp_path / "config.yaml").write_bytes(config_yaml(env["NAME"], expected=60, args='["--lr", "a b"]'))
    done = run_cli(tmp_path, "submit", str(project), "-c", "config.yaml", "--entry", "train.py", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from utils from pkg ['--lr', 'a b']\n"
    assert "packed" in done.stderr
    assert "4 files" in done.stderr


def test_ignored_files_are_not_packed(server: Server, tmp_path: Path) -> None:
    """A file matched by .gitignore (or .gpuledgerignore) is not in the job's workdir; the rest is."""
    env = cli_user(server, tmp_path)
    listing = "import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('data')))\n"
    project = write_project(
        tmp_path / "proj",
        {
            "main.py": listing,
            ".gitignore": "secret.txt\n*.ckpt\n",
            ".gpuledgerignore": "data/big.bin\n",
            "secret.txt": "password",
            "model.ckpt": "weights",
            "data/big.bin": "x" * 100,
            "data/small.csv": "a,b\n",
        },
    )
    (tmp_path / "config.yaml").write_bytes(config_yaml(env["NAME"], expected=60, entrypoint="main.py"))
    done = run_cli(tmp_path, "submit", str(project), "-c", "config.yaml", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert "secret.txt" not in done.stdout
    assert "model.ckpt" not in done.stdout
    assert "big.bin" not in done.stdout
    assert "'main.py'" in done.stdout
    assert "'small.csv'" in done.stdout


def test_a_project_past_the_limit_is_refused_naming_its_largest_files(server: Server, tmp_path: Path) -> None:
    """The server's PROJECT_MAX_BYTES refuses a bigger project with a 413 naming the largest files."""
    env = cli_user(server, tmp_path)
    project = write_project(
        tmp_path / "proj",
        {"main.py": "print(1)\n", "weights.bin": b"\0" * (PROJECT_LIMIT + 1), "vocab.txt": "a" * 5000},
    )
    done = run_cli(tmp_path, "submit", str(project), "-c", "config.yaml", "--entry", "main.py", "-d", env=env)
    assert done.returncode != 0
    assert "weights.bin" in done.stderr
    assert "vocab.txt" in done.stderr
    assert "PROJECT_MAX_BYTES" in done.stderr


def hostile_tar(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """A tar holding a good entrypoint and ``member``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entry = tarfile.TarInfo("main.py")
        entry.size = 9
        tar.addfile(entry, io.BytesIO(b"print(1)\n"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (tarfile.TarInfo("../escape.py"), "'../escape.py': leads outside the project"),
        (tarfile.TarInfo("/etc/cron.d/x"), "'/etc/cron.d/x': an absolute path"),
        (link("out", "../../etc/passwd"), "'out': a link pointing outside the project"),
        (link("abs", "/etc/shadow"), "'abs': a link pointing outside the project"),
        (link("hard", "/etc/shadow", tarfile.LNKTYPE), "'hard': a link pointing outside the project"),
        (device("null"), "'null': a device, FIFO or other special file"),
    ],
)
def test_a_hostile_archive_member_is_a_400_naming_it(server: Server, member: tarfile.TarInfo, said: str) -> None:
    """``..``, absolute paths, links leading out and devices are refused before anything is stored."""
    with server.client(server.token("mallory")) as client:
        answer = client.post(
            "/api/submit?wait=false",
            files={
                "project": ("p.tar", hostile_tar(member, b"x" if member.isfile() else b"")),
                "config_file": ("c.yaml", config_yaml("mallory", entrypoint="main.py")),
            },
        )
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["detail"]


def pack(files: dict[str, str]) -> bytes:
    """A project packed as the SDK packs it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def test_the_scanner_reads_every_python_file_of_a_project(server: Server) -> None:
    """A shell call hidden in a module the entrypoint imports is refused, naming that file."""
    files = {
        "main.py": "import helpers\nhelpers.go()\n",
        "lib/helpers.py": "import os\ndef go():\n    os.system('id')\n",
    }
    with server.client(server.token("eve")) as client:
        answer = client.post(
            "/api/submit?wait=false",
            files={
                "project": ("p.tar", pack(files)),
                "config_file": ("c.yaml", config_yaml("eve", entrypoint="main.py")),
            },
        )
    assert answer.status_code == 400, answer.text
    assert "lib/helpers.py line 3: os.system" in answer.json()["detail"]


def test_a_single_file_submission_is_unchanged(server: Server) -> None:
    """The old multipart API (a code part, no project) still runs the file as solution.py."""
    with server.client(server.token("olduser")) as client:
        answer = client.post(
            "/api/submit?wait=false",
            files={"code": ("s.py", b"import sys\nprint(sys.argv[0])\n"), "config_file": ("c", config_yaml("olduser"))},
        )
        assert answer.status_code == 200, answer.text
        wait_status(client, answer.json()["job_id"], {"completed"})
        assert client.get(f"/api/results/{answer.json()['job_id']}").json()["stdout"].endswith("/work/solution.py\n")


@pytest.mark.ssh
def test_a_project_runs_on_an_ssh_node(healthy_ssh_cluster: Any, server_factory: Any) -> None:
    """Over SFTP the project lands in the node's workdir, subdirectories and all, and what it leaves in
    outputs/ comes back (a link there is not followed)."""
    from test_ssh_jobs import ssh_settings

    server = server_factory(**ssh_settings(healthy_ssh_cluster))
    files = {
        "run/main.py": "from tools.fmt import say\nsay()\n",
        "run/tools/fmt.py": (
            "import os\ndef say():\n    os.makedirs('outputs')\n"
            "    open('outputs/w.bin', 'wb').write(bytes(range(256)))\n"
            "    os.symlink('/etc/hostname', 'outputs/host')\n    print('ssh ok')\n"
        ),
    }
    with server.client(server.admin_token) as client:
        answer = client.post(
            "/api/submit?wait=true",
            files={
                "project": ("p.tar", pack(files)),
                "config_file": ("c", config_yaml("admin", entrypoint="run/main.py")),
            },
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["stdout"]) == ("completed", "ssh ok\n"), answer.json()
        job_id = answer.json()["job_id"]
        listing = client.get(f"/api/jobs/{job_id}/artifacts").json()
        assert [a["path"] for a in listing["artifacts"]] == ["outputs/w.bin"]
        assert client.get(f"/api/jobs/{job_id}/artifacts/outputs/w.bin").content == bytes(range(256))


def test_job_command_gains_entrypoint_and_args() -> None:
    """``{entrypoint}`` is one quoted word, ``{args}`` one quoted word per argument (nothing without any)."""
    from executors.protocol import render_job_command

    common = {"solution": "/w/src/train.py", "competition_id": "c", "results": "/w/r", "workdir": "/w"}
    rendered = render_job_command("python3 {entrypoint} {args}", **common, args=["--lr", "0.1", "a b;rm -rf /"])
    assert rendered == "python3 /w/src/train.py --lr 0.1 'a b;rm -rf /'"
    assert render_job_command("python3 {solution} {args}", **common) == "python3 /w/src/train.py "


def test_a_project_runs_under_slurm_and_its_outputs_come_back(slurm_cluster: Any, tmp_path: Path) -> None:
    """Under Slurm (the same wrapper) the project is in the workdir and its outputs/ are kept."""
    from test_slurm import slurm_server

    server = slurm_server(tmp_path / "srv", slurm_cluster)
    server.start()
    files = {"main.py": "import os, helper\nos.mkdir('outputs')\nopen('outputs/r.txt', 'w').write(helper.X)\n"}
    try:
        with server.client(server.admin_token) as client:
            answer = client.post(
                "/api/submit?wait=false",
                files={
                    "project": ("p.tar", pack({**files, "helper.py": "X = 'slurm ok'\n"})),
                    "config_file": ("c", config_yaml("admin", entrypoint="main.py")),
                },
            )
            assert answer.status_code == 200, answer.text
            job_id = answer.json()["job_id"]
            assert wait_status(client, job_id, {"completed", "failed"}, timeout=60)["status"] == "completed"
            assert client.get(f"/api/jobs/{job_id}/artifacts/outputs/r.txt").content == b"slurm ok"
    finally:
        server.stop()


def test_packing_is_deterministic_and_capped_before_sending(tmp_path: Path) -> None:
    """The same tree packs to the same bytes whatever the files' times; past the cap nothing is read and
    the error names the largest files."""
    import os

    from gpuledger.errors import ProjectTooLarge
    from gpuledger.project import pack_project

    project = write_project(tmp_path / "p", {"a.py": "print(1)\n", "data/big.bin": b"\1" * 5000, "b.txt": "x" * 300})
    first = pack_project(project)
    os.utime(project / "a.py", (1, 1))
    assert pack_project(project).data == first.data
    with pytest.raises(ProjectTooLarge, match=r"largest files: data/big.bin \(5000 bytes\), b.txt \(300 bytes\)"):
        pack_project(project, max_bytes=4096)
