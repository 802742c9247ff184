"""Declared environments: what a cached environment adds to a job, and what a cold build costs over uv.

1. Warm cache: the same one-line job as a project with a ``requirements.txt`` whose environment is
   already in the node's cache, against the identical project without the file, interleaved through
   one real server on the local runner (submit to completed, by the ``/api/submit?wait=true`` answer).
   Goal: ratio of the medians at most 1.2.
2. Cold build: ``envsetup.py`` on an empty environment cache, against a bare ``uv venv`` + ``uv pip
   install -r`` of the same requirements into a fresh directory, interleaved (each has its own uv package
   cache, warm after the first build as a node's is after its first job). Goal: ratio at most 1.2.
3. The same cold build of a large environment (5 wheels of 400 modules, 100 MB), where what uv does
   with the files it takes from its cache (hard links or copies) shows. Goal: ratio at most 1.2.

All install from wheelhouses of hand-written wheels (offline). Prints one line per figure.

    python bench/env.py [--jobs 10] [--builds 10] [--large-builds 6]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from server import OPEN_LIMITS, Server  # noqa: E402 - the test suite's server fixture, reused
from test_envs import build_wheel  # noqa: E402 - the same hand-written wheel as the tests

from gpuledger.project import pack_project  # noqa: E402

TARGET = 1.2
PACKAGES = 5  # wheels in the requirements: a small but not trivial environment
LARGE_MODULES, LARGE_MODULE_BYTES = 400, 50_000  # per wheel of the large environment: 20 MB
UV = str(Path(sys.executable).parent / "uv")


def wheelhouse(root: Path) -> tuple[Path, str]:
    house = root / "wheels"
    house.mkdir()
    for n in range(PACKAGES):
        build_wheel(house, f"benchdep{n}", "1.0", f"VALUE = {n}\n")
    return house, "".join(f"benchdep{n}==1.0\n" for n in range(PACKAGES))


def large_wheelhouse(root: Path) -> tuple[Path, str]:
    """PACKAGES wheels of LARGE_MODULES modules each, written by hand like build_wheel's."""
    house = root / "large-wheels"
    house.mkdir()
    for n in range(PACKAGES):
        name = f"largedep{n}"
        info = f"{name}-1.0.dist-info"
        files = {f"{name}/m{i}.py": f"# {i}\n".encode().ljust(LARGE_MODULE_BYTES, b"#") for i in range(LARGE_MODULES)}
        files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
        files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        record = "".join(f"{path},sha256={sha256(data)},{len(data)}\n" for path, data in files.items())
        files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
        with zipfile.ZipFile(house / f"{name}-1.0-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as archive:
            for path, data in files.items():
                archive.writestr(path, data)
    return house, "".join(f"largedep{n}==1.0\n" for n in range(PACKAGES))


def sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def project(root: Path, requirements: str | None) -> bytes:
    root.mkdir(parents=True)
    (root / "main.py").write_text("print('ok')\n")
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return pack_project(root).data


def job_seconds(server: Server, token: str, archive: bytes) -> float:
    config = b"competition_id: bench\nproject_id: bench\nuser_id: bench\nexpected_time: 60\nentrypoint: main.py\n"
    begun = time.perf_counter()
    with server.client(token) as client:
        answer = client.post(
            "/api/submit?wait=true",
            files={"project": ("project.tar", archive), "config_file": ("config.yaml", config)},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed", answer.text
    return time.perf_counter() - begun


def warm_ratio(root: Path, house: Path, requirements: str, jobs: int) -> None:
    server = Server(root / "server", **{
        "code_scanner_quick_mode": True, "endpoint_limits": OPEN_LIMITS, "rate_limit_per_minute": 0,
        "max_active_jobs_per_user": 0, "env_find_links": str(house), "job_command": "python3 {entrypoint}",
    })  # fmt: skip
    server.root.mkdir()
    server.start()
    try:
        token = server.token("bench")
        with_env, bare = project(root / "with", requirements), project(root / "bare", None)
        job_seconds(server, token, with_env)  # the cold build, so every sample below is a cache hit
        samples: dict[str, list[float]] = {"declared": [], "none": []}
        for _ in range(jobs):
            samples["declared"].append(job_seconds(server, token, with_env))
            samples["none"].append(job_seconds(server, token, bare))
    finally:
        server.stop()
    report("warm-cache job", samples["declared"], samples["none"])


def cold_ratio(root: Path, house: Path, requirements: str, builds: int, what: str) -> None:
    root.mkdir()
    job = root / "job"
    job.mkdir()
    (job / "requirements.txt").write_text(requirements)
    setup = REPO / "executors" / "envsetup.py"
    index = ["--find-links", str(house), "--no-index"]
    samples: dict[str, list[float]] = {"envsetup": [], "uv": []}
    ours = [sys.executable, "-I", "-S", str(setup)]
    bare = [UV, "pip", "install", "--quiet", *index, "-r", str(job / "requirements.txt"), "--python"]
    bare_env = {**os.environ, "UV_CACHE_DIR": str(root / "uv-cache")}  # not the machine's ~/.cache/uv
    cache = root / "cache"
    for n in range(builds):
        venv = str(root / f"venv{n}")
        # Only uv's package cache (per node, CACHE/.build/.uv-cache) stays, warm as after the node's first
        # build, at its own path (its entries link to each other by absolute paths).
        for entry in cache.iterdir() if cache.exists() else []:
            if entry.name != ".build":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        samples["envsetup"].append(timed([*ours, str(cache), str(job), str(root / "log"), "--find-links", str(house)]))
        make = [UV, "venv", "--quiet", "--python", sys.executable, venv]
        samples["uv"].append(timed(make, [*bare, venv + "/bin/python"], env=bare_env))
        shutil.rmtree(venv)
    report(what, samples["envsetup"], samples["uv"])


def timed(*commands: list[str], env: dict[str, str] | None = None) -> float:
    begun = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - begun


def report(what: str, ours: list[float], baseline: list[float]) -> None:
    a, b = statistics.median(ours), statistics.median(baseline)
    verdict = "met" if a / b <= TARGET else "NOT met"
    print(f"{what}: median {a * 1000:.1f} ms vs {b * 1000:.1f} ms, ratio {a / b:.2f} (goal <= {TARGET}: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--builds", type=int, default=10)
    parser.add_argument("--large-builds", type=int, default=6)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-env-"))
    try:
        house, requirements = wheelhouse(root)
        cold_ratio(root / "cold", house, requirements, args.builds, "cold set-up")
        large_house, large = large_wheelhouse(root)
        cold_ratio(root / "large", large_house, large, args.large_builds, "cold set-up, 100 MB")
        warm_ratio(root, house, requirements, args.jobs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
