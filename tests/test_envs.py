"""Declared environments against a real server on the local runner, offline: a requirements.txt naming a
wheel the test builds into a wheelhouse (ENV_FIND_LINKS, no index) is built once with uv and cached."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server import OPEN_LIMITS, Server, cli_user, config_yaml, run_cli, running, wait_status

from executors.environment import SETUP_SOURCE

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("require_sandbox")]


def build_wheel(wheelhouse: Path, name: str, version: str, source: str) -> Path:
    """A pure-Python wheel written by hand: the module, METADATA, WHEEL and a RECORD of their hashes."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = wheelhouse / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server whose set-ups install only from a local wheelhouse (``tinydep``, ``lockdep``), keeping one
    environment at most (ENV_CACHE_MAX_BYTES = 1: eviction after every set-up)."""
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(wheelhouse, "tinydep", "1.0", "VALUE = 'tiny 1.0'\n")
    build_wheel(wheelhouse, "lockdep", "2.0", "VALUE = 'locked 2.0'\n")
    settings: dict[str, Any] = {
        "code_scanner_quick_mode": True,
        "endpoint_limits": OPEN_LIMITS,
        "max_active_jobs_per_user": 0,
        "rate_limit_per_minute": 0,
        "env_find_links": str(wheelhouse),
        "env_cache_max_bytes": 1,  # every environment but the one just taken is past the limit
        "job_command": "python3 {entrypoint} {args}",
    }
    with running(tmp_path_factory.mktemp("envs"), **settings) as started:
        started.wheelhouse = wheelhouse  # type: ignore[attr-defined] - the lock test locks against it
        yield started


def submit_project(server: Server, tmp_path: Path, files: dict[str, str]) -> str:
    """Submit the directory ``files`` make (entrypoint main.py) and return the job's id."""
    tmp_path.mkdir(exist_ok=True)
    env = cli_user(server, tmp_path)
    project = tmp_path / "proj"
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (tmp_path / "config.yaml").write_bytes(config_yaml(env["NAME"], expected=60, entrypoint="main.py"))
    done = run_cli(tmp_path, "submit", str(project), "-c", "config.yaml", "-d", env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def env_ready(server: Server, job_id: str, kind: str = "job.env_ready") -> dict[str, Any]:
    with server.client(server.admin_token) as client:
        events = client.get(f"/api/jobs/{job_id}/events").json()["events"]
    found = [e["event"] for e in events if e["type"] == kind]
    assert len(found) == 1, [e["type"] for e in events]
    return found[0]


def ended(server: Server, job_id: str, statuses: set[str]) -> dict[str, Any]:
    with server.client(server.admin_token) as client:
        wait_status(client, job_id, statuses, timeout=90)
        return client.get(f"/api/results/{job_id}").json()


def test_a_declared_requirement_is_built_once_then_taken_from_the_cache(server: Server, tmp_path: Path) -> None:
    """The job imports the wheelhouse's package: the first set-up is a miss, the same project's next a hit;
    the job cannot write to the environment (its files are hard links into uv's cache)."""
    main = "import sys, tinydep\ntry:\n    open(tinydep.__file__, 'a')\nexcept OSError:\n    print('read-only')\n"
    files = {"main.py": main + "print(tinydep.VALUE, sys.prefix)\n", "requirements.txt": "tinydep==1.0\n"}
    first = submit_project(server, tmp_path / "a", files)
    out = ended(server, first, {"completed"})
    assert "tiny 1.0" in out["stdout"]
    assert "read-only" in out["stdout"]
    miss = env_ready(server, first)
    assert miss["hit"] is False
    second = submit_project(server, tmp_path / "b", files)
    assert "tiny 1.0" in ended(server, second, {"completed"})["stdout"]
    hit = env_ready(server, second)
    assert (hit["hit"], hit["digest"]) == (True, miss["digest"])
    assert hit["seconds"] < miss["seconds"]


def test_an_unmet_requirement_fails_the_job_with_uvs_error_in_its_log(server: Server, tmp_path: Path) -> None:
    """A requirement the wheelhouse cannot meet ends the job failed, env_setup_failed, uv's words in stderr."""
    job_id = submit_project(server, tmp_path, {"main.py": "print('never')\n", "requirements.txt": "nosuchpkg==9\n"})
    out = ended(server, job_id, {"failed"})
    assert out["reason"] == "env_setup_failed", out
    assert "nosuchpkg" in out["stderr"]
    assert "never" not in out["stdout"]
    assert env_ready(server, job_id, "job.env_failed")["seconds"] > 0  # charged like a run


def test_the_least_recently_used_environment_is_evicted_past_the_cache_limit(server: Server, tmp_path: Path) -> None:
    """Past ENV_CACHE_MAX_BYTES another project's set-up evicts the idle environment: it is built again."""
    first = {"main.py": "import tinydep\n", "requirements.txt": "tinydep\n"}
    other = {"main.py": "import tinydep\n", "requirements.txt": "tinydep>=1\n"}
    built = []
    for n, files in enumerate((first, other, first)):
        job_id = submit_project(server, tmp_path / str(n), files)
        ended(server, job_id, {"completed"})
        built.append(env_ready(server, job_id))
    assert built[0]["digest"] == built[2]["digest"] != built[1]["digest"]
    assert [b["hit"] for b in built] == [False, False, False]


def test_two_builds_at_once_hard_link_one_wheel_out_of_uvs_cache_at_their_final_paths(tmp_path: Path) -> None:
    """Two set-ups at once (two keys, one wheel) both succeed; their files are hard links to uv's cache's,
    and each venv names the path the job sees it at, not the staging directory it was built in."""
    from executors import envsetup

    wheelhouse, cache = tmp_path / "wheels", tmp_path / "envs"
    wheelhouse.mkdir()
    build_wheel(wheelhouse, "tinydep", "1.0", "VALUE = 'linked'\n")
    setups = []
    for n, requirement in enumerate(("tinydep==1.0\n", "tinydep>=1\n")):
        job = tmp_path / f"job{n}"
        job.mkdir()
        (job / "requirements.txt").write_text(requirement)
        argv = [sys.executable, "-I", "-S", envsetup.__file__, str(cache), str(job), str(tmp_path / "log")]
        setups.append(subprocess.Popen([*argv, "--find-links", str(wheelhouse)], stdout=subprocess.PIPE, text=True))
    reports = [json.loads(setup.communicate(timeout=60)[0]) for setup in setups]
    assert [r["ok"] for r in reports] == [True, True], (tmp_path / "log").read_text()
    in_uv_cache = {path.stat().st_ino for path in (cache / envsetup.BUILDS / envsetup.UV_CACHE).rglob("*.py")}
    for report in reports:  # (two builds at once may each unpack the wheel: then each links its own copy)
        module = next(Path(report["venv"]).glob("lib/python*/site-packages/tinydep/__init__.py")).stat()
        assert module.st_ino in in_uv_cache
    for report in reports:
        venv = report["venv"]
        ran = subprocess.run([f"{venv}/bin/python", "-c", "import sys, tinydep; print(sys.prefix, tinydep.VALUE)"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert ran.stdout == f"{venv} linked\n"
        assert f"'{venv}'" in Path(venv, "bin", "activate").read_text()
    assert os.listdir(cache / envsetup.BUILDS) == [envsetup.UV_CACHE]  # no staging directory left behind


def test_the_setup_scripts_command_line_and_json_line_match_argparse_and_json() -> None:
    """envsetup parses environment.prepare's line and prints json.dumps's line (by hand, for a fast start-up)."""
    from executors import envsetup

    args = envsetup.parse(["c", "j", "l", "--timeout", "5", "--max-bytes", "7", "--index-url", "", "--uv", "/u"])
    assert (args.cache, args.job_dir, args.log, args.timeout, args.max_bytes, args.uv) == ("c", "j", "l", 5.0, 7, "/u")
    assert (args.attempt, args.index_url, args.jobs_dir) == ("job", "", "")
    for wrong in (["--nope", "1"], ["--timeout", "x"], ["--uv"]):
        with pytest.raises(SystemExit):
            envsetup.parse(["c", "j", "l", *wrong])
    report = {"ok": True, "hit": False, "seconds": 0.25, "venv": '/x/"q\\ \n\x00\x7f é 𝄞 \udcff', "base": ""}
    assert envsetup.json_line(report) == json.dumps(report)


def test_a_build_keeps_uvs_cache_of_the_layout_before_build_dirs(tmp_path: Path) -> None:
    """A node's ``envs/.uv-cache`` (from before environments were staged in ``envs/.build``) moves there whole."""
    from executors import envsetup

    (tmp_path / envsetup.UV_CACHE).mkdir()
    (tmp_path / envsetup.UV_CACHE / "entry").write_text("kept")
    staging = envsetup.stage(str(tmp_path), "key")
    assert (tmp_path / envsetup.BUILDS / envsetup.UV_CACHE / "entry").read_text() == "kept"
    assert staging == str(tmp_path / envsetup.BUILDS / "key")
    assert os.listdir(staging) == []


def fake_environment(cache: Path, name: str, used: float, files: dict[str, Path | int]) -> None:
    """A ready cache entry last used at ``used``: each file a new one of that many bytes, or a hard link."""
    (cache / name).mkdir(parents=True)
    for file, content in files.items():
        if isinstance(content, Path):
            os.link(content, cache / name / file)
        else:
            (cache / name / file).write_bytes(b"x" * content)
    (cache / name / ".ready").touch()
    (cache / name / ".last_used").touch()
    os.utime(cache / name / ".last_used", (used, used))


def test_eviction_counts_a_file_shared_by_environments_once(tmp_path: Path) -> None:
    """Hard-linked files count once against ENV_CACHE_MAX_BYTES, and removing an environment frees a shared
    file only when its last holder goes."""
    from executors import envsetup

    cache, jobs = tmp_path / "envs", tmp_path / "jobs"
    fake_environment(cache, "a", 1, {"f": 1000})
    fake_environment(cache, "b", 2, {"f": cache / "a" / "f"})
    envsetup.evict(str(cache), str(jobs), 1500, keep="b")
    assert sorted(os.listdir(cache)) == ["a", "b"]  # 1000 bytes on disk, not 2000

    fake_environment(cache, "c", 3, {"g": 1000})
    envsetup.evict(str(cache), str(jobs), 1500, keep="c")  # a frees nothing while b holds f: b goes too
    assert sorted(p for p in os.listdir(cache) if not p.endswith(".lock")) == ["c"]


def test_the_setup_script_is_python38_stdlib_only() -> None:
    """envsetup.py, uploaded to nodes beside the wrapper, parses as Python 3.8 and imports only the stdlib."""
    tree = ast.parse(SETUP_SOURCE, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= sys.stdlib_module_names


@pytest.mark.ssh
def test_a_declared_environment_is_built_on_an_ssh_node(
    healthy_ssh_cluster: Any, server_factory: Any, tmp_path: Path
) -> None:
    """Over SFTP the requirements reach the node, the set-up builds the venv in the node's cache (ENV_UV)."""
    from test_projects import pack
    from test_ssh_jobs import ssh_settings

    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    build_wheel(wheelhouse, "tinydep", "1.0", "VALUE = 'tiny over ssh'\n")
    uv = str(Path(sys.executable).parent / "uv")
    server = server_factory(**ssh_settings(healthy_ssh_cluster), env_find_links=str(wheelhouse), env_uv=uv)
    files = {"main.py": "import tinydep\nprint(tinydep.VALUE)\n", "requirements.txt": "tinydep==1.0\n# ssh\n"}
    config = config_yaml("admin", entrypoint="main.py")
    with server.client(server.admin_token) as client:
        answer = client.post(
            "/api/submit?wait=true", files={"project": ("p.tar", pack(files)), "config_file": ("c", config)}
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["stdout"]) == ("completed", "tiny over ssh\n"), answer.text
    assert env_ready(server, answer.json()["job_id"])["digest"]


def absolute_registry(lock: str, project: Path, wheelhouse: Path) -> str:
    """uv records a local wheelhouse relative to the project; the job's workdir is elsewhere: name it whole."""
    relative = os.path.relpath(wheelhouse, project)
    assert f'registry = "{relative}"' in lock, lock
    return lock.replace(f'registry = "{relative}"', f'registry = "{wheelhouse}"')


def test_a_pyproject_with_a_uv_lock_is_synced_frozen(server: Server, tmp_path: Path) -> None:
    """pyproject.toml + uv.lock (no requirements.txt): `uv sync --frozen` installs the locked package."""
    wheelhouse = server.wheelhouse  # type: ignore[attr-defined]
    project = tmp_path / "locked"
    project.mkdir()
    pyproject = '[project]\nname = "p"\nversion = "0.1"\nrequires-python = ">=3.8"\ndependencies = ["lockdep"]\n'
    (project / "pyproject.toml").write_text(pyproject)
    uv = str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "lock", "--quiet", "--find-links", str(wheelhouse), "--no-index"], cwd=project, check=True)
    lock = (project / "uv.lock").read_text()
    files = {"main.py": "import lockdep\nprint(lockdep.VALUE)\n", "pyproject.toml": pyproject}
    job_id = submit_project(server, tmp_path, {**files, "uv.lock": absolute_registry(lock, project, wheelhouse)})
    assert "locked 2.0" in ended(server, job_id, {"completed"})["stdout"]
    assert env_ready(server, job_id)["hit"] is False


def test_a_declared_environment_on_slurm_builds_or_fails_the_job(slurm_cluster: Any, tmp_path: Path) -> None:
    """Under Slurm the set-up runs before sbatch (shared filesystem): a good requirement completes with
    job.env_ready, an unmet one ends failed, env_setup_failed, never handed to Slurm again and again."""
    from test_slurm import slurm_server

    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    build_wheel(wheelhouse, "tinydep", "1.0", "VALUE = 'tiny under slurm'\n")
    server = slurm_server(tmp_path / "server", slurm_cluster, env_find_links=str(wheelhouse))
    server.start()
    try:
        outcomes = []
        for requirement in ("tinydep==1.0\n", "nosuchpkg==9\n"):
            files = {"main.py": "import tinydep\nprint(tinydep.VALUE)\n", "requirements.txt": requirement}
            job_id = submit_project(server, tmp_path / requirement[:4], files)
            outcomes.append(ended(server, job_id, {"completed", "failed"}))
        ready = env_ready(server, outcomes[0]["job_id"])
    finally:
        server.stop()
    good_out, bad_out = outcomes
    assert ready["hit"] is False
    assert "tiny under slurm" in good_out["stdout"], good_out
    assert good_out["status"] == "completed"
    assert (bad_out["status"], bad_out["reason"]) == ("failed", "env_setup_failed"), bad_out
    assert "nosuchpkg" in bad_out["stderr"]


@pytest.mark.parametrize(
    "line",
    ["-r /etc/passwd", "--index-url http://example.invalid/simple", "pkg @ file:///etc", "git+https://host/x", "./src"],
)
def test_a_requirements_line_that_is_not_a_package_is_refused_before_uv_runs(tmp_path: Path, line: str) -> None:
    """Defence in depth behind the set-up's sandbox: options, paths, URLs and direct references never reach uv."""
    from executors import envsetup

    (tmp_path / "requirements.txt").write_text(f"numpy==1.26  # fine\n{line}\n")
    refused = envsetup.refused_line(str(tmp_path / "requirements.txt"))
    assert refused is not None
    assert refused.startswith("requirements.txt line 2:")
    (tmp_path / "requirements.txt").write_text('torch>=2.1,<3 ; python_version > "3.8"\nrich[jupyter]~=13.0\n')
    assert envsetup.refused_line(str(tmp_path / "requirements.txt")) is None
    assert "--no-build" in envsetup.NO_BUILD


def test_each_setup_step_sees_only_its_project_wheelhouse_and_environment(server: Server, tmp_path: Path) -> None:
    """envsetup's bwrap: the server's root and a ready cache entry are hidden, the project is read-only, and
    the environment being built (at its final path) can hard-link files out of uv's cache."""
    from executors import envsetup

    cache, job_dir = tmp_path / "envs", tmp_path / "job" / "work"
    for d in (cache / "other", job_dir, cache / envsetup.BUILDS / "mine", cache / envsetup.BUILDS / envsetup.UV_CACHE):
        d.mkdir(parents=True)
    venv, uv_cache = cache / "mine", cache / envsetup.UV_CACHE  # as the steps see them
    args = envsetup.parse([str(cache), str(job_dir), str(tmp_path / "log"), "--find-links", str(server.wheelhouse)])  # type: ignore[attr-defined]

    def runs(*command: str) -> int:
        argv = envsetup.sandboxed(list(command), args)
        return subprocess.run(argv, env=envsetup.step_env(args, str(venv)), capture_output=True).returncode

    assert runs("ls", str(server.root)) != 0
    assert runs("ls", str(cache / "other")) != 0
    assert runs("ls", str(server.wheelhouse), str(job_dir)) == 0  # type: ignore[attr-defined]
    assert runs("touch", str(job_dir / "x")) != 0
    assert runs("touch", str(venv / "x"), str(uv_cache / "x")) == 0
    assert runs("ln", str(uv_cache / "x"), str(venv / "y")) == 0
    assert (cache / envsetup.BUILDS / "mine" / "y").stat().st_nlink == 2
